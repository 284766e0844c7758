//! Writing LTX files from page images, in parallel: pages are compressed in
//! batches by rayon tasks (`FrameCompressor`, which also hashes each frame),
//! then appended in page order with `Encoder::write_frame`. While one batch
//! is written out, the next is compressed. Memory stays bounded by two
//! batches, whatever the database size.
//!
//! Used by `encode-db` (snapshots), `diff -o` (deltas) and `quickstart`.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use ltx_core::checksum::page_checksum;
use ltx_core::frame::FrameDigest;
use ltx_core::types::{lz4_bound, CHECKSUM_FLAG};
use ltx_core::{Checksum, Encoder, FrameCompressor, Header, Pgno, Trailer, TxId};
use rayon::prelude::*;

use crate::db::{DbImage, TempFile};

/// Pages compressed per batch (one batch is written while the next compresses).
pub const BATCH_PAGES: usize = 1024;
/// Pages per rayon task within a batch.
const TASK_PAGES: usize = 32;

/// What the post-apply checksum of the output is.
#[derive(Debug, Clone, Copy)]
pub enum PostApply {
    /// NoChecksum output: zero.
    None,
    /// A snapshot: the rolling checksum of the pages written (computed in
    /// the compression pass); `8000000000000000` when there are none.
    FromPages,
    /// A known value (e.g. the checksum of the new database for a delta).
    Given(Checksum),
}

/// A written file.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Its header.
    pub header: Header,
    /// Its trailer.
    pub trailer: Trailer,
    /// Frames written.
    pub pages: u64,
    /// File size.
    pub bytes: u64,
}

/// One rayon task's output: frames back to back, their digests, and the XOR
/// of their pages' rolling-checksum contributions.
struct Chunk {
    bytes: Vec<u8>,
    digests: Vec<FrameDigest>,
    xor: u64,
}

fn compress_batch<'a, F>(batch: &[Pgno], page: &F, sums: bool, page_bytes: usize) -> Vec<Chunk>
where
    F: Fn(Pgno) -> &'a [u8] + Sync,
{
    batch
        .par_chunks(TASK_PAGES)
        .map(|pgnos| {
            let mut c = Chunk {
                // Room for the worst case, so compress_frame never reallocates.
                bytes: Vec::with_capacity(pgnos.len() * (16 + lz4_bound(page_bytes))),
                digests: Vec::with_capacity(pgnos.len()),
                xor: 0,
            };
            let mut compressor = FrameCompressor::new();
            for &p in pgnos {
                let data = page(p);
                c.digests.push(compressor.compress(p, data, &mut c.bytes));
                if sums {
                    c.xor ^= page_checksum(p, data).0;
                }
            }
            c
        })
        .collect()
}

fn emit<W: Write + ?Sized>(
    chunks: Vec<Chunk>,
    enc: &mut Encoder,
    out: &mut Vec<u8>,
    w: &mut W,
    xor: &mut u64,
    pb: &ProgressBar,
) -> Result<()> {
    let mut n = 0u64;
    for c in chunks {
        let mut off = 0usize;
        for d in &c.digests {
            let len = d.frame_len as usize;
            enc.write_frame(out, &c.bytes[off..off + len], d)?;
            off += len;
            n += 1;
        }
        *xor ^= c.xor;
    }
    w.write_all(out)?;
    out.clear();
    pb.inc(n);
    Ok(())
}

/// Writes a whole LTX file to `w`: `header`, then one frame per page of
/// `pgnos` (ascending; `page(pgno)` gives its content), then the trailer.
/// The encoder enforces every rule (order, lock page, commit, snapshot
/// completeness, checksum formats).
///
/// # Errors
/// Encoder rule violations; write errors.
pub fn write_ltx<'a, W, F>(
    header: Header,
    pgnos: &[Pgno],
    page: F,
    post: PostApply,
    w: &mut W,
    pb: &ProgressBar,
) -> Result<Written>
where
    W: Write + Send + ?Sized,
    F: Fn(Pgno) -> &'a [u8] + Sync,
{
    let mut out = Vec::with_capacity(BATCH_PAGES * header.page_size.bytes() / 2);
    let mut enc = Encoder::new(header, &mut out)?;
    let sums = matches!(post, PostApply::FromPages);
    let ps = header.page_size.bytes();
    let mut xor = 0u64;
    let mut pending: Option<Vec<Chunk>> = None;
    for batch in pgnos.chunks(BATCH_PAGES) {
        let (next, r) = rayon::join(
            || compress_batch(batch, &page, sums, ps),
            || match pending.take() {
                Some(c) => emit(c, &mut enc, &mut out, w, &mut xor, pb),
                None => Ok(()),
            },
        );
        r?;
        pending = Some(next);
    }
    if let Some(c) = pending.take() {
        emit(c, &mut enc, &mut out, w, &mut xor, pb)?;
    }
    let post = match post {
        PostApply::None => Checksum(0),
        PostApply::FromPages => Checksum(xor | CHECKSUM_FLAG),
        PostApply::Given(c) => c,
    };
    let pages = pgnos.len() as u64;
    let bytes = enc.bytes_written();
    let trailer = enc.finish(&mut out, post)?;
    let bytes = bytes + out.len() as u64;
    w.write_all(&out)?;
    Ok(Written {
        header,
        trailer,
        pages,
        bytes,
    })
}

/// Writes an LTX file into a temporary file beside `dest`; the caller
/// commits it ([`TempFile::commit`]: fsync, rename, fsync directory) or
/// drops it (removed).
///
/// # Errors
/// As [`write_ltx`]; I/O errors.
pub fn write_ltx_temp<'a, F>(
    dest: &Path,
    header: Header,
    pgnos: &[Pgno],
    page: F,
    post: PostApply,
    pb: &ProgressBar,
) -> Result<(TempFile, Written)>
where
    F: Fn(Pgno) -> &'a [u8] + Sync,
{
    let tmp = TempFile::beside(dest, "write")?;
    // Unbuffered: every write is a whole batch of frames.
    let mut w = tmp.file();
    let written = write_ltx(header, pgnos, page, post, &mut w, pb)
        .with_context(|| format!("{}: cannot write", dest.display()))?;
    Ok((tmp, written))
}

/// Options for a file written from database images.
#[derive(Debug, Clone, Copy)]
pub struct LtxOptions {
    /// Max TXID (min is 1 for a snapshot, the same as max for a delta).
    pub txid: TxId,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Write the NoChecksum flag (pre- and post-apply zero).
    pub no_checksum: bool,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every page number of a database of `n` pages except the lock page.
pub fn all_pages(n: u32, lock: Pgno) -> Vec<Pgno> {
    (1..=n).filter(|&p| p != lock).collect()
}

/// Writes a snapshot of `db` for `dest` (into a temporary file the caller
/// commits): TXID range 1..=`opts.txid`, commit = page count, every page but
/// the lock page, post-apply = rolling checksum.
///
/// # Errors
/// An empty database (no page size to encode); I/O errors.
pub fn snapshot_db(db: &DbImage, dest: &Path, opts: &LtxOptions) -> Result<(TempFile, Written)> {
    let Some(ps) = db.page_size else {
        bail!(
            "{}: the database is empty (0 bytes), so it has no page size to encode",
            db.path.display()
        );
    };
    if opts.txid.0 == 0 {
        bail!("--txid must be at least 1");
    }
    let mut h = Header::new(ps, TxId(1), opts.txid);
    h.commit = db.page_count();
    h.timestamp = opts.timestamp;
    let post = if opts.no_checksum {
        h.flags = ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
        PostApply::None
    } else {
        PostApply::FromPages
    };
    let pgnos = all_pages(h.commit, ps.lock_pgno());
    let pb = crate::progress::pages(pgnos.len() as u64, "encoding");
    let data: &[u8] = &db.data;
    let psz = ps.bytes();
    let w = write_ltx_temp(
        dest,
        h,
        &pgnos,
        |p: Pgno| &data[(p as usize - 1) * psz..p as usize * psz],
        post,
        &pb,
    )?;
    pb.finish_and_clear();
    Ok(w)
}
