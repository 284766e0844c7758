//! `ltx wal dump WAL [--json]`: a SQLite WAL as SQLite reads it: the
//! header, every frame (page, commit field, salts and checksum checked),
//! the committed transactions, and where the valid part ends and why.
//!
//! Frames after the valid part are listed too (state `after-end`): a
//! restarted WAL keeps the older generation's frames behind the new ones,
//! and seeing them is often the point of dumping a WAL. The WAL is read
//! twice from its memory map: once to find its transactions and end, once
//! to print frames as they stream by (JSON included), both times in 1 MiB
//! reads, so memory does not grow with the WAL.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use anyhow::Result;
use ltx_core::wal::{self, WalEnd, WalEvent, WalFrame, WalReader, WalScan, WAL_HEADER_SIZE};
use serde::Serialize;

use super::{scan_file, stream};
use crate::output;

/// Arguments of `ltx wal dump`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Frame states: `committed` (part of the database), `uncommitted` (valid frames after
the last commit frame: a transaction in progress or rolled back; SQLite ignores
them), `after-end` (past the frame that ended the valid part, e.g. frames of an
older generation left behind when SQLite restarted the WAL).

Exit codes: 0 dumped (whatever the WAL holds: an invalid WAL is a WAL with no
valid frames, as in SQLite); 2 the file cannot be read.

Examples:
  ltx wal dump app.db-wal
  ltx wal dump --summary app.db-wal
  ltx wal dump --json app.db-wal | jq '.transactions | length'")]
pub struct Args {
    /// The WAL file (`app.db-wal`).
    pub wal: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Header, transactions and end only: no frame list.
    #[arg(long)]
    pub summary: bool,
}

/// The header's 32 bytes as stored, checked or not.
#[derive(Serialize)]
struct HeaderJson {
    byte_order: Option<&'static str>,
    checkpoint_seq: u32,
    checksum1: u32,
    checksum2: u32,
    magic: String,
    page_size: u32,
    problem: Option<String>,
    salt1: u32,
    salt2: u32,
    valid: bool,
    version: u32,
}

#[derive(Serialize)]
struct FrameJson {
    checksum1: u32,
    checksum2: u32,
    checksum_ok: bool,
    commit: u32,
    index: u64,
    offset: u64,
    pgno: u32,
    salt1: u32,
    salt2: u32,
    salt_ok: bool,
    state: &'static str,
    /// The committed transaction the frame belongs to.
    transaction: Option<u64>,
}

#[derive(Serialize)]
struct TxnJson {
    checksum1: u32,
    checksum2: u32,
    commit: u32,
    end: u64,
    frames: u64,
    index: u64,
    offset: u64,
    page_count: usize,
    pgnos: Vec<u32>,
    salt1: u32,
    salt2: u32,
    size: u64,
}

#[derive(Serialize)]
struct EndJson {
    at: u64,
    committed_frames: u64,
    message: String,
    reason: &'static str,
    transactions: u64,
    uncommitted_frames: u64,
    valid_end: u64,
}

/// The whole dump; fields in alphabetical order (the key order of all of
/// ltx's JSON), serialised straight to the output so that `frames`
/// streams.
#[derive(Serialize)]
struct DumpJson<'a> {
    end: EndJson,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<LazyFrames<'a>>,
    header: Option<HeaderJson>,
    size: u64,
    transactions: Vec<TxnJson>,
}

/// Frames produced while serialising.
struct LazyFrames<'a> {
    wal: &'a Path,
    scan: &'a WalScan,
}

impl Serialize for LazyFrames<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(None)?;
        let mut err = None;
        for_each_frame(self.wal, self.scan, |f| {
            if let Err(e) = seq.serialize_element(&f) {
                err = Some(e);
                anyhow::bail!("stopped");
            }
            Ok(())
        })
        .map_err(|e| match err.take() {
            Some(se) => se,
            None => S::Error::custom(format!("{e:#}")),
        })?;
        seq.end()
    }
}

/// Where a frame stands.
fn state(frame: &WalFrame, tail: bool, end: &WalEnd) -> &'static str {
    if tail {
        "after-end"
    } else if frame.offset < end.valid_end {
        "committed"
    } else {
        "uncommitted"
    }
}

/// Calls `f` for every frame of the WAL at `wal`, valid or after the end.
fn for_each_frame(
    wal: &Path,
    scan: &WalScan,
    mut f: impl FnMut(FrameJson) -> Result<()>,
) -> Result<()> {
    let mut txn = 0usize;
    stream(wal, false, WalReader::new().scan_tail(), |ev| {
        let (frame, tail) = match ev {
            WalEvent::Frame { frame, .. } => (frame, false),
            WalEvent::TailFrame { frame, .. } => (frame, true),
            _ => return Ok(()),
        };
        let st = state(&frame, tail, &scan.end);
        while txn < scan.transactions.len() && scan.transactions[txn].end() <= frame.offset {
            txn += 1;
        }
        let h = frame.header;
        f(FrameJson {
            checksum1: h.checksum[0],
            checksum2: h.checksum[1],
            checksum_ok: frame.checksum_ok,
            commit: h.commit,
            index: frame.index,
            offset: frame.offset,
            pgno: h.pgno,
            salt1: h.salt1,
            salt2: h.salt2,
            salt_ok: frame.salt_ok,
            state: st,
            transaction: (st == "committed").then_some(txn as u64),
        })
    })?;
    Ok(())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The first 32 bytes, if the file has them.
fn read_header(path: &Path) -> Result<Option<[u8; WAL_HEADER_SIZE]>> {
    let mut b = [0u8; WAL_HEADER_SIZE];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut n = 0;
    while n < b.len() {
        let k = f
            .read(&mut b[n..])
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if k == 0 {
            return Ok(None);
        }
        n += k;
    }
    Ok(Some(b))
}

fn header_json(wal: Option<&[u8; WAL_HEADER_SIZE]>, scan: &WalScan) -> Option<HeaderJson> {
    let wal: &[u8] = wal?;
    let magic = be32(wal, 0);
    let problem = match scan.end.reason {
        wal::WalEndReason::Header(p) => Some(p.to_string()),
        _ => None,
    };
    Some(HeaderJson {
        byte_order: match magic {
            wal::WAL_MAGIC_LE => Some("little-endian"),
            wal::WAL_MAGIC_BE => Some("big-endian"),
            _ => None,
        },
        checkpoint_seq: be32(wal, 12),
        checksum1: be32(wal, 24),
        checksum2: be32(wal, 28),
        magic: format!("0x{magic:08x}"),
        page_size: be32(wal, 8),
        valid: problem.is_none(),
        problem,
        salt1: be32(wal, 16),
        salt2: be32(wal, 20),
        version: be32(wal, 4),
    })
}

fn end_json(end: &WalEnd) -> EndJson {
    EndJson {
        at: end.at,
        committed_frames: end.committed_frames,
        message: end.reason.to_string(),
        reason: end.reason.name(),
        transactions: end.transactions,
        uncommitted_frames: end.uncommitted_frames,
        valid_end: end.valid_end,
    }
}

fn txn_json(t: &wal::Transaction) -> TxnJson {
    TxnJson {
        checksum1: t.checksum[0],
        checksum2: t.checksum[1],
        commit: t.commit,
        end: t.end(),
        frames: t.frames,
        index: t.index,
        offset: t.offset,
        page_count: t.pages.len(),
        pgnos: t.pages.iter().map(|p| p.pgno).collect(),
        salt1: t.salt1,
        salt2: t.salt2,
        size: t.size,
    }
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let size = std::fs::metadata(&args.wal)
        .with_context(|| format!("{}: cannot open", args.wal.display()))?
        .len();
    let raw_header = read_header(&args.wal)?;
    let scan = scan_file(&args.wal, false)?;
    if args.json {
        let v = DumpJson {
            end: end_json(&scan.end),
            file: args.wal.display().to_string(),
            frames: (!args.summary).then_some(LazyFrames {
                wal: &args.wal,
                scan: &scan,
            }),
            header: header_json(raw_header.as_ref(), &scan),
            size,
            transactions: scan.transactions.iter().map(txn_json).collect(),
        };
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "WAL {} ({size} bytes)", args.wal.display())?;
    match header_json(raw_header.as_ref(), &scan) {
        None => writeln!(
            out,
            "header: {size} bytes, shorter than the 32-byte WAL header"
        )?,
        Some(h) => {
            writeln!(out, "header:")?;
            writeln!(
                out,
                "  magic:           {}{}",
                h.magic,
                h.byte_order
                    .map(|o| format!(" (checksum words {o})"))
                    .unwrap_or_default()
            )?;
            writeln!(out, "  version:         {}", h.version)?;
            writeln!(out, "  page_size:       {}", h.page_size)?;
            writeln!(out, "  checkpoint_seq:  {}", h.checkpoint_seq)?;
            writeln!(out, "  salt1:           0x{:08x}", h.salt1)?;
            writeln!(out, "  salt2:           0x{:08x}", h.salt2)?;
            writeln!(
                out,
                "  checksum:        0x{:08x} 0x{:08x}",
                h.checksum1, h.checksum2
            )?;
            match &h.problem {
                None => writeln!(out, "  valid:           yes")?,
                Some(p) => writeln!(out, "  valid:           no: {p}")?,
            }
        }
    }
    if !args.summary {
        writeln!(out, "frames:")?;
        writeln!(
            out,
            "  {:>8}  {:>12}  {:>8}  {:>8}  {:<17}  {:<4}  {:<8}  STATE",
            "FRAME", "OFFSET", "PGNO", "COMMIT", "SALTS", "SALT", "CHECKSUM"
        )?;
        for_each_frame(&args.wal, &scan, |f| {
            let st = match f.transaction {
                Some(t) => format!("{} (txn {t})", f.state),
                None => f.state.to_string(),
            };
            writeln!(
                out,
                "  {:>8}  {:>12}  {:>8}  {:>8}  {:08x} {:08x}  {:<4}  {:<8}  {st}",
                f.index,
                f.offset,
                f.pgno,
                f.commit,
                f.salt1,
                f.salt2,
                if f.salt_ok { "ok" } else { "bad" },
                if f.checksum_ok { "ok" } else { "bad" },
            )?;
            Ok(())
        })?;
    }
    writeln!(out, "transactions:")?;
    writeln!(
        out,
        "  {:>6}  {:>12}  {:>12}  {:>7}  {:>7}  {:>8}  PGNOS",
        "TXN", "OFFSET", "SIZE", "FRAMES", "PAGES", "COMMIT"
    )?;
    for t in &scan.transactions {
        let pgnos: Vec<u32> = t.pages.iter().map(|p| p.pgno).collect();
        writeln!(
            out,
            "  {:>6}  {:>12}  {:>12}  {:>7}  {:>7}  {:>8}  {}",
            t.index,
            t.offset,
            t.size,
            t.frames,
            pgnos.len(),
            t.commit,
            output::ranges(&pgnos, 8)
        )?;
    }
    writeln!(out, "end: {}", scan.end)?;
    Ok(())
}
