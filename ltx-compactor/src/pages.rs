//! Pages of a database as of a TXID, read from a bucket without building
//! the database (I/O): `ltx page URL` and `ltx sql`.
//!
//! Both start from a restore plan ([`crate::fetch::plan`]): the fewest
//! files that reproduce the target. A page's content at the target is its
//! copy in the newest planned file holding it (the rule of
//! [`ltx_core::plan_merge`], so the bytes equal those a full restore
//! writes); pages above the final commit do not exist, nor does the lock
//! page.
//!
//! - [`find_page`] (one page): opens the planned files newest first, a
//!   few at a time (1, then 4, 16, 32 at once: most pages are found in the
//!   newest files or the snapshot), until one's page index holds the page,
//!   then reads that one frame (a ranged GET of its bytes unless it came
//!   with the opening read).
//! - [`PitDb`] (many pages, e.g. an SQLite VFS): opens every planned file
//!   at once (header and page index; see [`crate::reader::open`]), plans
//!   the merge and checks the chain as a restore does, then reads any set
//!   of pages ([`PitDb::read_pages`]): frames held from the opening reads
//!   cost nothing, the others are grouped per file into spans of
//!   neighbouring frames ([`crate::reader::spans`]) read with one ranged GET
//!   each, in parallel. Bytes read, frames decoded and files whose frames
//!   were read are counted ([`PitDb::stats`]).
//!
//! Memory: [`PitDb`] keeps every planned file's page index and the bodies
//! held within [`ReadOptions::hold_budget`]; it caches no page (the caller
//! decides).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use ltx_core::index::IndexEntry;
use ltx_core::merge::{MergePlan, PlannedFrame};
use ltx_core::{decode_frame, PageSize, Pgno};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::reader::{self, HoldBudget, Opened, ReadOptions};
use crate::restore::RestorePlan;
use crate::store::Bucket;

/// Why a page number names no page of the database at the target.
///
/// Returned as [`Error::Usage`] by [`find_page`] and [`PitDb::locate`];
/// its text says which case it is.
fn no_such_page(location: &str, pgno: Pgno, commit: u32, lock: Pgno, txid: String) -> Error {
    if pgno == 0 {
        Error::usage(format!("{location}: page numbers start at 1"))
    } else if pgno == lock {
        Error::usage(format!(
            "{location}: page {pgno} is the lock page (the page holding byte 2^30), which SQLite never stores"
        ))
    } else {
        Error::usage(format!(
            "{location}: page {pgno} is beyond the database size at TXID {txid} ({commit} pages)"
        ))
    }
}

/// One page read from a bucket.
#[derive(Debug, Clone)]
pub struct FoundPage {
    /// Page number.
    pub pgno: Pgno,
    /// The page.
    pub data: Vec<u8>,
    /// Page size.
    pub page_size: PageSize,
    /// Database size in pages at the target.
    pub commit: u32,
    /// The target's time (ms): the header timestamp of the newest planned
    /// file.
    pub timestamp_ms: i64,
    /// Key of the file the page came from.
    pub key: String,
    /// That file's level.
    pub level: u8,
    /// The frame in that file.
    pub entry: IndexEntry,
    /// The frame's flags (page header).
    pub flags: u16,
    /// Bytes read (headers, indexes, the frame).
    pub bytes_read: u64,
    /// Files opened (headers and indexes read).
    pub files_opened: usize,
}

/// Decodes `frame` (the bytes of `e` in `key`) into a page, checking that
/// it holds the page the index says. Returns the page and the frame's
/// flags.
fn decode(key: &str, ps: PageSize, e: &IndexEntry, frame: &[u8]) -> Result<(Vec<u8>, u16)> {
    let mut page = vec![0u8; ps.bytes()];
    let d = decode_frame(frame, ps, &mut page)
        .map_err(|err| Error::format(key.to_string(), err.offset_by(e.offset).page(e.pgno)))?;
    if d.header.pgno != e.pgno {
        return Err(Error::invalid(format!(
            "{key}: the page index says page {} at offset {}, the frame holds page {}",
            e.pgno, e.offset, d.header.pgno
        )));
    }
    let flags = if frame.len() >= 6 {
        u16::from_be_bytes([frame[4], frame[5]])
    } else {
        0
    };
    Ok((page, flags))
}

/// The bytes of frame `e` of an opened file: held ones from memory, else
/// one read (through the open local file, or a ranged GET).
async fn frame_bytes(bucket: &Bucket, o: &Opened, e: &IndexEntry) -> Result<(bytes::Bytes, u64)> {
    if let Some(b) = o.held_frame(e) {
        return Ok((b, 0));
    }
    let r = e.offset..e.offset + e.size;
    let b = match &o.local {
        Some(f) => f.read(r).await?,
        None => bucket.read_range(&o.meta.key, r).await?,
    };
    Ok((b, e.size))
}

/// Page `pgno` of the database as `plan` reproduces it (see the module
/// docs): the planned files are opened newest first until one holds it.
///
/// # Errors
/// [`Error::Usage`] for page 0, the lock page or a page beyond the
/// database size at the target; store errors; a damaged file (naming its
/// key); a plan none of whose files holds the page (the chain cannot
/// reproduce it).
pub async fn find_page(
    bucket: &Bucket,
    plan: &RestorePlan,
    pgno: Pgno,
    opts: &ReadOptions,
) -> Result<FoundPage> {
    let location = bucket.url().to_string();
    let budget = HoldBudget::new(opts.hold_budget);
    let mut bytes_read = 0u64;
    let mut opened_n = 0usize;
    let mut commit: Option<(u32, PageSize, i64)> = None;
    // Newest first.
    let files: Vec<_> = plan.files.iter().rev().collect();
    let mut next = 0usize;
    let mut batch = 1usize;
    while next < files.len() {
        let chunk = &files[next..(next + batch).min(files.len())];
        next += chunk.len();
        batch = (batch * 4).min(opts.concurrency.max(1));
        let opened: Vec<Opened> = futures::stream::iter(chunk)
            .map(|f| reader::open(bucket, &f.key, f.size, &budget, opts))
            .buffered(opts.concurrency.max(1))
            .try_collect()
            .await?;
        opened_n += opened.len();
        bytes_read += opened.iter().map(|o| o.bytes_read).sum::<u64>();
        for (o, f) in opened.iter().zip(chunk) {
            let h = &o.meta.header;
            let (c, ps, ts) = *commit.get_or_insert((h.commit, h.page_size, h.timestamp));
            if h.page_size != ps {
                return Err(Error::invalid(format!(
                    "{location}: {} has page size {} but {} has {}",
                    o.meta.key,
                    h.page_size.bytes(),
                    files[0].key,
                    ps.bytes()
                )));
            }
            if pgno == 0 || pgno > c || pgno == ps.lock_pgno() {
                return Err(no_such_page(
                    &location,
                    pgno,
                    c,
                    ps.lock_pgno(),
                    plan.txid.to_string(),
                ));
            }
            let Some(e) = o.meta.index.get(pgno).copied() else {
                continue;
            };
            let (frame, n) = frame_bytes(bucket, o, &e).await?;
            bytes_read += n;
            let (data, flags) = decode(&o.meta.key, ps, &e, &frame)?;
            return Ok(FoundPage {
                pgno,
                data,
                page_size: ps,
                commit: c,
                timestamp_ms: ts,
                key: o.meta.key.clone(),
                level: f.level,
                entry: e,
                flags,
                bytes_read,
                files_opened: opened_n,
            });
        }
    }
    Err(Error::invalid(format!(
        "{location}: page {pgno} is in none of the {} files that reproduce TXID {} (the chain cannot rebuild it)",
        plan.files.len(),
        plan.txid
    )))
}

/// What a [`PitDb`] has read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PitStats {
    /// Files in the plan.
    pub files_planned: usize,
    /// Files whose frames were read (beyond opening them).
    pub files_touched: usize,
    /// Frames decoded (pages fetched).
    pub pages: u64,
    /// Bytes read: opening every file (headers, indexes, small bodies) and
    /// the frames.
    pub bytes_read: u64,
}

/// A database at one TXID whose pages are read on demand (see the module
/// docs).
pub struct PitDb {
    bucket: Bucket,
    plan: RestorePlan,
    opened: Vec<Opened>,
    mp: MergePlan,
    opts: ReadOptions,
    bytes_read: AtomicU64,
    pages: AtomicU64,
    touched: Vec<AtomicBool>,
}

impl PitDb {
    /// Opens every file of `plan` (of database `db`) and plans the pages.
    ///
    /// # Errors
    /// Store errors; damaged files; files that do not chain or do not hold
    /// every page up to the commit (as a restore would refuse them).
    pub async fn open(
        bucket: &Bucket,
        db: &str,
        plan: RestorePlan,
        opts: ReadOptions,
    ) -> Result<PitDb> {
        let files: Vec<(String, u64)> =
            plan.files.iter().map(|f| (f.key.clone(), f.size)).collect();
        let opened = reader::open_all(bucket, files, &opts).await?;
        let (mp, _) = crate::fetch::plan_pages(bucket, db, &opened)?;
        let read: u64 = opened.iter().map(|o| o.bytes_read).sum();
        let touched = (0..opened.len()).map(|_| AtomicBool::new(false)).collect();
        Ok(PitDb {
            bucket: bucket.clone(),
            plan,
            opened,
            mp,
            opts,
            bytes_read: AtomicU64::new(read),
            pages: AtomicU64::new(0),
            touched,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &RestorePlan {
        &self.plan
    }

    /// Page size.
    pub fn page_size(&self) -> PageSize {
        self.mp.header.page_size
    }

    /// Database size in pages.
    pub fn commit(&self) -> u32 {
        self.mp.header.commit
    }

    /// The header time of the last planned file (ms).
    pub fn timestamp_ms(&self) -> i64 {
        self.mp.header.timestamp
    }

    /// Where page `pgno` is: `None` for the lock page of a database that
    /// spans it (SQLite never reads it; a reader sees zeros).
    ///
    /// # Errors
    /// [`Error::Usage`] for page 0 or a page beyond the database size.
    pub fn locate(&self, pgno: Pgno) -> Result<Option<&PlannedFrame>> {
        let lock = self.page_size().lock_pgno();
        if pgno == 0 || pgno > self.commit() {
            return Err(no_such_page(
                self.bucket.url(),
                pgno,
                self.commit(),
                lock,
                self.plan.txid.to_string(),
            ));
        }
        if pgno == lock {
            return Ok(None);
        }
        match self.mp.frames.binary_search_by_key(&pgno, |f| f.entry.pgno) {
            Ok(i) => Ok(Some(&self.mp.frames[i])),
            // `plan_pages` checked that every page is there.
            Err(_) => Err(Error::invalid(format!(
                "{}: page {pgno} is in none of the planned files",
                self.bucket.url()
            ))),
        }
    }

    /// The key and level of the file a frame comes from.
    pub fn file_of(&self, f: &PlannedFrame) -> (&str, u8) {
        let o = &self.plan.files[f.input];
        (&o.key, o.level)
    }

    /// Reads pages `pgnos` (any order, no duplicates needed): returns them
    /// in the same order (zeros for the lock page). Frames of one file
    /// closer than [`ReadOptions::span_gap`] are read by one request.
    ///
    /// # Errors
    /// As [`PitDb::locate`]; store errors; damaged frames (naming the key,
    /// offset and page).
    pub async fn read_pages(&self, pgnos: &[Pgno]) -> Result<Vec<Vec<u8>>> {
        let ps = self.page_size();
        let mut frames: Vec<PlannedFrame> = Vec::with_capacity(pgnos.len());
        let mut at: Vec<Option<usize>> = Vec::with_capacity(pgnos.len());
        for &p in pgnos {
            match self.locate(p)? {
                Some(f) => {
                    at.push(Some(frames.len()));
                    frames.push(*f);
                }
                None => at.push(None),
            }
        }
        for f in &frames {
            self.touched[f.input].store(true, Ordering::Relaxed);
        }
        let (bytes, read) = reader::frames_of(
            &self.bucket,
            &self.opened,
            &frames,
            self.opts.span_gap,
            self.opts.span_max,
            self.opts.concurrency,
        )
        .await?;
        self.bytes_read.fetch_add(read, Ordering::Relaxed);
        self.pages.fetch_add(frames.len() as u64, Ordering::Relaxed);
        let mut decoded: Vec<Option<Vec<u8>>> = frames
            .iter()
            .zip(&bytes)
            .map(|(f, b)| {
                decode(&self.opened[f.input].meta.key, ps, &f.entry, b).map(|d| Some(d.0))
            })
            .collect::<Result<_>>()?;
        Ok(at
            .into_iter()
            .map(|i| match i {
                Some(i) => decoded[i].take().unwrap_or_default(),
                None => vec![0u8; ps.bytes()],
            })
            .collect())
    }

    /// What was read so far.
    pub fn stats(&self) -> PitStats {
        PitStats {
            files_planned: self.opened.len(),
            files_touched: self
                .touched
                .iter()
                .filter(|t| t.load(Ordering::Relaxed))
                .count(),
            pages: self.pages.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
        }
    }
}
