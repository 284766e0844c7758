//! Restoring a database file from a bucket (I/O).
//!
//! [`plan`] lists the database and asks [`crate::restore::plan_restore`]
//! for the fewest files reaching the target. A TXID or latest target needs
//! no header: the listing decides. A time target reads headers only where
//! the listing's last-modified times cannot decide ([`resolve_time`]).
//!
//! [`restore_to_file`] opens every planned file with [`crate::reader`]
//! (small files: one GET of the whole object, kept in memory within a
//! budget; large files: the header and a suffix holding the page index,
//! two requests sent together), plans the merge with ltx-core (newest copy
//! of each page wins, pages above the final commit dropped), checks that
//! every page up to the commit is present, then writes the winning pages
//! in place into a temporary file beside the output: frames held in memory
//! are decoded on blocking threads at once; the others are read as a few
//! large streamed spans per file ([`crate::reader::SpanReader`]), decoded
//! batch by batch as the body arrives. The database checksum of the result
//! is computed on the way and must equal the last file's post-apply
//! checksum (when the files track checksums); then the file is fsynced,
//! renamed over the output and the directory fsynced. Any error removes the
//! temporary file: the output is untouched.
//!
//! Requests: a restore from a snapshot and N small files costs the listing,
//! N whole GETs and, for the snapshot, 2 requests for its header and index
//! plus one per span (about `concurrency` spans). Memory: the page indexes,
//! the bodies held (at most [`ReadOptions::hold_budget`]), the objects being
//! opened (at most [`ReadOptions::concurrency`] × [`ReadOptions::whole_max`]
//! for small ones) and, per span in flight, one batch being decoded and one
//! being filled ([`RestoreOptions::fetch_batch`] bytes each).

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ltx_core::checksum::{page_checksum, DbChecksum};
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::PlannedFrame;
use ltx_core::{decode_frame, plan_merge, Checksum, MergeOptions, MergePlan, TxId};
use serde::Serialize;

use crate::atomic::TempFile;
use crate::catalog::{txid_serde, LtxObject};
use crate::counting::RequestCounts;
use crate::error::{Context, Error, Result};
use crate::reader::{self, Opened, ReadOptions, SpanReader};
use crate::restore::{plan_restore, RestorePlan, Target};
use crate::store::{Bucket, READ_CONCURRENCY};

/// Progress callback: (bytes of frames done, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;
/// A check run on the finished temporary file before it replaces the output.
///
/// Its error is returned as [`Error::Check`].
pub type PreCommitCheck =
    Arc<dyn Fn(&FsPath) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// Restore tuning.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Spans of frames read at once (each one streamed request).
    pub concurrency: usize,
    /// Compressed bytes of frames per decode batch.
    pub fetch_batch: u64,
    /// How files are opened and read (whole-object limit, memory budget,
    /// files opened at once, span sizes).
    pub read: ReadOptions,
    /// Replace an existing output file.
    pub force: bool,
    /// Progress reports.
    pub progress: Option<Progress>,
    /// Run on the temporary file before the rename (e.g. SQLite's integrity check).
    pub pre_commit: Option<PreCommitCheck>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            concurrency: 4,
            fetch_batch: 1 << 20,
            read: ReadOptions::default(),
            force: false,
            progress: None,
            pre_commit: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Database prefix.
    pub db: String,
    /// The restored transaction.
    #[serde(with = "txid_serde")]
    pub txid: TxId,
    /// Its time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Its time, RFC 3339.
    pub timestamp: String,
    /// Whether the time comes from a header (else: an upper bound from
    /// last-modified times).
    pub timestamp_exact: bool,
    /// Keys of the files applied, in order.
    pub files: Vec<String>,
    /// Total size of those files.
    pub files_bytes: u64,
    /// Bytes actually read (headers, indexes, bodies and spans of frames).
    pub bytes_read: u64,
    /// Page size.
    pub page_size: u32,
    /// Database size in pages.
    pub commit: u32,
    /// Pages written.
    pub pages: u64,
    /// The database checksum of the result, when the files track checksums.
    pub checksum: Option<String>,
    /// Output path (empty for a dry run).
    pub output: String,
    /// Requests made through the bucket (and its clones) so far, by kind:
    /// for a bucket opened for this restore, everything it took (discovery,
    /// listing, planning, reading).
    pub requests: RequestCounts,
}

/// RFC 3339 form of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Lists `db` and plans a restore to `target`.
///
/// TXID and latest targets read no header: the plan's time is then an
/// upper bound from last-modified times (`timestamp_exact` false; see
/// [`exact_time`]); the restore itself reads the last file's header. Time
/// targets read headers as [`resolve_time`] says.
///
/// # Errors
/// Listing errors; no plan (the message says which TXIDs are reproducible).
pub async fn plan(
    bucket: &Bucket,
    db: &str,
    target: Target,
) -> Result<(RestorePlan, Vec<LtxObject>)> {
    let (mut catalog, _) = bucket.catalog(db).await?;
    let fail = |error| Error::Plan {
        context: bucket.location(db),
        error,
    };
    let Target::Time(t) = target else {
        let plan = plan_restore(&catalog, target).map_err(fail)?;
        return Ok((plan, catalog));
    };
    resolve_time(bucket, &mut catalog, t).await?;
    let mut plan = plan_restore(&catalog, target).map_err(fail)?;
    if !plan.timestamp_exact {
        // Landed on a file known to be at or before `t` by its
        // last-modified time: its header says exactly when.
        exact_time(bucket, &mut plan).await?;
        if let Some(o) = catalog
            .iter_mut()
            .find(|o| Some(&o.key) == plan.files.last().map(|f| &f.key))
        {
            o.timestamp_ms = Some(plan.timestamp_ms);
        }
        if plan.timestamp_ms > t {
            // A header time after its object's last-modified time (a
            // clock ahead of the store's): the listing cannot decide;
            // read every header.
            bucket
                .fill_timestamps(&mut catalog, &mut Default::default())
                .await?;
            plan = plan_restore(&catalog, target).map_err(fail)?;
        }
    }
    Ok((plan, catalog))
}

/// Makes `plan`'s time exact: reads the header of its last file unless
/// its time already is (one small ranged GET).
///
/// # Errors
/// Store errors; an invalid header.
pub async fn exact_time(bucket: &Bucket, plan: &mut RestorePlan) -> Result<()> {
    if plan.timestamp_exact {
        return Ok(());
    }
    let Some(last) = plan.files.last_mut() else {
        return Ok(());
    };
    let h = bucket.read_header(&last.key).await?;
    last.timestamp_ms = Some(h.timestamp);
    plan.timestamp_ms = h.timestamp;
    plan.timestamp_exact = true;
    Ok(())
}

/// Header timestamps a time target `t` needs: fills `timestamp_ms` of the
/// catalog objects whose time decides which transaction is the latest at
/// or before `t`, and of no others.
///
/// A file is uploaded after its last transaction committed, so its
/// last-modified time is an upper bound of its time: every file ending at
/// or before the newest end whose last-modified time is at or before `t`
/// is at or before `t`. Times grow with TXIDs, so the answer lies among
/// the ends after that one: they are searched by reading the header of one
/// file per probed end: first the next end alone (usually after `t`: one
/// header, done), then, while no end is known to be after `t`, ends 1, 2,
/// 4, … further and the last one, then up to [`READ_CONCURRENCY`] / 2
/// evenly spaced probes at a time between the bounds: `O(log n)` headers
/// in a few rounds when the listing decides nothing (objects copied at
/// once). Times that turn out not to grow with TXIDs make it read every
/// header.
///
/// # Errors
/// Store errors; invalid headers.
pub async fn resolve_time(bucket: &Bucket, catalog: &mut [LtxObject], t: i64) -> Result<()> {
    // Distinct ends, ascending; per end the file whose header is read (the
    // lowest level: a transaction's own L0 file where there is one).
    let mut order: Vec<usize> = (0..catalog.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&catalog[a], &catalog[b]);
        (x.max_txid, x.level, &x.key).cmp(&(y.max_txid, y.level, &y.key))
    });
    let mut ends: Vec<(TxId, usize)> = Vec::new();
    for &i in &order {
        if ends.last().is_none_or(|e| e.0 != catalog[i].max_txid) {
            ends.push((catalog[i].max_txid, i));
        }
    }
    // Whether the end's time is known to be at or before `t` (Some(true)),
    // known to be after it (Some(false)), or unknown.
    let at_or_before = |catalog: &[LtxObject], end: TxId| -> Option<bool> {
        let mut after = false;
        for o in catalog.iter().filter(|o| o.max_txid == end) {
            match o.timestamp_ms {
                Some(ts) if ts <= t => return Some(true),
                Some(_) => after = true,
                None if o.created_ms <= t => return Some(true),
                None => {}
            }
        }
        after.then_some(false)
    };
    // lo: the last end known at or before t; hi: the first known after.
    let mut lo: Option<usize> = None;
    let mut hi = ends.len();
    for (i, e) in ends.iter().enumerate() {
        match at_or_before(catalog, e.0) {
            Some(true) => lo = Some(i),
            Some(false) => hi = hi.min(i),
            None => {}
        }
    }
    let probes = (READ_CONCURRENCY / 2).max(1);
    for round in 0.. {
        let first = lo.map_or(0, |l| l + 1);
        if first >= hi {
            break;
        }
        let n = hi - first;
        let mut idx: Vec<usize> = if round == 0 {
            // Usually the answer: the next end is after `t`.
            vec![first]
        } else if hi == ends.len() {
            // No end known after `t` yet: gallop (1, 2, 4, … ends on),
            // and the last end.
            let mut v: Vec<usize> = (0..probes)
                .map(|j| first + (1usize << j) - 1)
                .filter(|&i| i < hi)
                .collect();
            v.push(hi - 1);
            v
        } else {
            let k = probes.min(n);
            (0..k).map(|j| first + j * n / k).collect()
        };
        idx.sort_unstable();
        idx.dedup();
        let keys: Vec<(usize, String)> = idx
            .iter()
            .map(|&i| (i, catalog[ends[i].1].key.clone()))
            .collect();
        let got: Vec<(usize, i64)> = futures::stream::iter(keys)
            .map(|(i, k)| async move {
                let h = bucket.read_header(&k).await?;
                Ok::<_, Error>((i, h.timestamp))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for (i, ts) in got {
            catalog[ends[i].1].timestamp_ms = Some(ts);
            if ts <= t {
                lo = Some(lo.map_or(i, |l| l.max(i)));
            } else {
                hi = hi.min(i);
            }
        }
        if lo.is_some_and(|l| l >= hi) {
            // Times do not grow with TXIDs: the search cannot decide.
            return bucket
                .fill_timestamps(catalog, &mut Default::default())
                .await;
        }
    }
    Ok(())
}

/// Restores `plan` into the database file `out` (see the module docs).
///
/// # Errors
/// The output exists (without `force`) or has a `-wal` file beside it;
/// store errors; corrupt or inconsistent files (naming the key, offset,
/// page); a checksum mismatch; I/O errors. The output is untouched.
pub async fn restore_to_file(
    bucket: &Bucket,
    db: &str,
    plan: &RestorePlan,
    out: &FsPath,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    check_destination(out, opts.force)?;
    let files: Vec<(String, u64)> = plan.files.iter().map(|f| (f.key.clone(), f.size)).collect();
    let opened: Vec<Opened> = reader::open_all(bucket, files, &opts.read).await?;
    let (mp, no_checksum) = plan_pages(bucket, db, &opened)?;
    let (ps, commit) = (mp.header.page_size, mp.header.commit);

    let tmp = TempFile::beside(out, "restore")?;
    let file = tmp
        .file()
        .try_clone()
        .context_with(|| format!("opening {}", tmp.path().display()))?;
    file.set_len(u64::from(commit) * ps.bytes() as u64)
        .context_with(|| format!("sizing {}", tmp.path().display()))?;
    let w = Arc::new(Writer {
        keys: Arc::new(opened.iter().map(|o| o.meta.key.clone()).collect()),
        ps,
        file: Arc::new(file),
        checksums: !no_checksum,
        done: AtomicU64::new(0),
        total: mp.frames.iter().map(|f| f.entry.size).sum(),
        progress: opts.progress.clone(),
    });
    let last_timestamp = opened.last().expect("plan has files").meta.header.timestamp;
    let bytes_read: u64 = opened.iter().map(|o| o.bytes_read).sum();
    let (xor, span_read) = write_pages(bucket, &w, &mp, opened, opts).await?;

    let checksum = if no_checksum || commit == 0 {
        None
    } else {
        let mut sum = DbChecksum::new(ps);
        sum.add_checksum(Checksum(xor));
        if sum.value() != mp.post_apply {
            return Err(Error::invalid(format!(
                "{}: the restored pages have database checksum {} but {} says {} after {}: refusing the result",
                bucket.location(db),
                sum.value(),
                w.keys.last().map_or("", |k| k.as_str()),
                mp.post_apply,
                mp.header.max_txid
            )));
        }
        Some(sum.value().to_string())
    };
    let files = w.keys.to_vec();
    drop(w);
    if let Some(check) = &opts.pre_commit {
        tmp.file()
            .sync_all()
            .context_with(|| format!("fsync {}", tmp.path().display()))?;
        check(tmp.path()).map_err(Error::Check)?;
    }
    tmp.commit(out)?;
    Ok(RestoreReport {
        db: db.to_string(),
        txid: mp.header.max_txid,
        timestamp_ms: last_timestamp,
        timestamp: rfc3339(last_timestamp),
        timestamp_exact: true,
        files,
        files_bytes: plan.bytes,
        bytes_read: bytes_read + span_read,
        page_size: ps.bytes() as u32,
        commit,
        pages: mp.frames.len() as u64,
        checksum,
        output: out.display().to_string(),
        requests: bucket.requests(),
    })
}

/// The pages of one step of a follower, fetched into a staging file by
/// [`stage_pages`].
#[derive(Debug, Clone)]
pub struct StagedPages {
    /// The merged header of the step's files: first min TXID, last max
    /// TXID, commit, page size, timestamp.
    pub header: ltx_core::Header,
    /// The post-apply checksum of the last file (`None`: NoChecksum files).
    pub post_apply: Option<Checksum>,
    /// The first file's pre-apply checksum (`None`: NoChecksum, or a
    /// snapshot).
    pub pre_apply: Option<Checksum>,
    /// The staged pages' numbers, ascending: every page the files hold up
    /// to the commit.
    pub pgnos: Vec<ltx_core::Pgno>,
    /// XOR of the staged pages' [`page_checksum`]s (0 for NoChecksum files).
    pub xor: u64,
    /// Keys of the files, in apply order.
    pub files: Vec<String>,
    /// Bytes actually read.
    pub bytes_read: u64,
}

/// Fetches the pages of `plan` (a follower's step: files in apply order,
/// see [`crate::restore::plan_follow`]) into `staging`, each page at its
/// place in the database (`(pgno - 1) * page_size`; the file is sized to
/// the commit and sparse elsewhere), as [`restore_to_file`] does: the
/// newest copy of each page, read as whole small files or as spans of the
/// winning frames, decoded as they arrive; the files must chain (checksum
/// links between adjacent files are checked). Unlike a restore the pages
/// need not make a whole database: the caller overlays them on its own.
///
/// # Errors
/// Store errors (a file deleted since the listing is
/// [`Error::Store`] with `NotFound`); corrupt or inconsistent files; I/O
/// errors on `staging`.
pub async fn stage_pages(
    bucket: &Bucket,
    db: &str,
    plan: &RestorePlan,
    staging: &std::fs::File,
    opts: &RestoreOptions,
) -> Result<StagedPages> {
    let files: Vec<(String, u64)> = plan.files.iter().map(|f| (f.key.clone(), f.size)).collect();
    let opened: Vec<Opened> = reader::open_all(bucket, files, &opts.read).await?;
    let (mp, no_checksum) = plan_chain(bucket, db, &opened)?;
    let ps = mp.header.page_size;
    let first = &opened.first().expect("plan has files").meta.header;
    let pre_apply = (!no_checksum && !first.is_snapshot()).then_some(first.pre_apply_checksum);
    staging
        .set_len(u64::from(mp.header.commit) * ps.bytes() as u64)
        .context("sizing the staging file")?;
    let w = Arc::new(Writer {
        keys: Arc::new(opened.iter().map(|o| o.meta.key.clone()).collect()),
        ps,
        file: Arc::new(staging.try_clone().context("opening the staging file")?),
        checksums: !no_checksum,
        done: AtomicU64::new(0),
        total: mp.frames.iter().map(|f| f.entry.size).sum(),
        progress: opts.progress.clone(),
    });
    let bytes_read: u64 = opened.iter().map(|o| o.bytes_read).sum();
    let (xor, span_read) = write_pages(bucket, &w, &mp, opened, opts).await?;
    Ok(StagedPages {
        header: mp.header,
        post_apply: (!no_checksum).then_some(mp.post_apply),
        pre_apply,
        pgnos: mp.frames.iter().map(|f| f.entry.pgno).collect(),
        xor,
        files: w.keys.to_vec(),
        bytes_read: bytes_read + span_read,
    })
}

/// Refuses an output that exists (without `force`) or has a WAL beside it.
fn check_destination(out: &FsPath, force: bool) -> Result<()> {
    if !force && out.exists() {
        return Err(Error::usage(format!(
            "{} exists (use --force to replace it)",
            out.display()
        )));
    }
    let wal = PathBuf::from(format!("{}-wal", out.display()));
    if wal.exists() {
        return Err(Error::usage(format!(
            "{} exists: a WAL beside the output would be applied over the restored file; remove it first",
            wal.display()
        )));
    }
    Ok(())
}

/// The pages to write: the merge plan of the opened files (newest copy of
/// each page), checked to chain (checksum links) and to hold every page up
/// to the commit. Also whether the files track checksums (`false`: one of
/// them is NoChecksum).
pub(crate) fn plan_pages(
    bucket: &Bucket,
    db: &str,
    opened: &[Opened],
) -> Result<(MergePlan, bool)> {
    let (mp, no_checksum) = plan_chain(bucket, db, opened)?;
    check_every_page(&mp, &bucket.location(db), opened.len())?;
    Ok((mp, no_checksum))
}

/// [`plan_pages`] without the check that every page is there (a
/// follower's step holds only the pages it changes).
fn plan_chain(bucket: &Bucket, db: &str, opened: &[Opened]) -> Result<(MergePlan, bool)> {
    let metas: Vec<&crate::store::ObjectMeta> = opened.iter().map(|o| &o.meta).collect();
    let no_checksum = metas.iter().any(|m| m.header.no_checksum());
    let inputs: Vec<_> = metas.iter().map(|m| m.merge_input()).collect();
    let flags = if no_checksum {
        HEADER_FLAG_NO_CHECKSUM
    } else {
        0
    };
    let mp = plan_merge(
        &inputs,
        &MergeOptions {
            flags,
            allow_gaps: false,
        },
    )
    .map_err(|e| {
        Error::format(
            format!("{}: the planned files do not chain", bucket.location(db)),
            e,
        )
    })?;
    for w in metas.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if !no_checksum
            && b.header.min_txid.0 == a.header.max_txid.0 + 1
            && b.header.pre_apply_checksum != a.trailer.post_apply_checksum
        {
            return Err(Error::invalid(format!(
                "{}: {} starts from database checksum {} but {} ends at {}",
                bucket.url(),
                b.key,
                b.header.pre_apply_checksum,
                a.key,
                a.trailer.post_apply_checksum
            )));
        }
    }
    Ok((mp, no_checksum))
}

/// Every page from 1 to the commit (but the lock page) is in the plan.
fn check_every_page(mp: &MergePlan, location: &str, files: usize) -> Result<()> {
    let lock = mp.header.page_size.lock_pgno();
    let commit = mp.header.commit;
    let mut want: u32 = 1;
    for f in &mp.frames {
        if want == lock {
            want += 1;
        }
        if f.entry.pgno != want {
            return Err(Error::invalid(format!(
                "{location}: page {want} is in none of the {files} files (the chain cannot rebuild the database at {})",
                mp.header.max_txid
            )));
        }
        want += 1;
    }
    if want == lock {
        want += 1;
    }
    if want <= commit {
        return Err(Error::invalid(format!(
            "{location}: page {want} is in none of the {files} files (commit is {commit})"
        )));
    }
    Ok(())
}

/// Frames held in memory, in batches of about `batch` bytes, and per file
/// the positions and entries of the others (read later as spans).
type Split = (
    Vec<Vec<(PlannedFrame, Bytes)>>,
    Vec<Vec<(usize, ltx_core::IndexEntry)>>,
);

fn split_frames(mp: &MergePlan, opened: &[Opened], batch: u64) -> Split {
    let mut held: Vec<Vec<(PlannedFrame, Bytes)>> = vec![Vec::new()];
    let mut held_bytes = 0u64;
    let mut ranged: Vec<Vec<(usize, ltx_core::IndexEntry)>> = vec![Vec::new(); opened.len()];
    for (fi, f) in mp.frames.iter().enumerate() {
        match opened[f.input].held_frame(&f.entry) {
            Some(b) => {
                if held_bytes >= batch {
                    held.push(Vec::new());
                    held_bytes = 0;
                }
                held_bytes += f.entry.size;
                held.last_mut().expect("one batch").push((*f, b));
            }
            None => ranged[f.input].push((fi, f.entry)),
        }
    }
    held.retain(|b| !b.is_empty());
    (held, ranged)
}

/// The spans the ranged frames are read as: at least 32 MiB (fewer
/// requests), up to `concurrency` of them for the bytes to read (parallel
/// streams), at most `span_max`; longest first (they bound the restore's
/// time).
fn plan_spans(
    ranged: Vec<Vec<(usize, ltx_core::IndexEntry)>>,
    read: &ReadOptions,
    concurrency: usize,
) -> Vec<(usize, reader::Span)> {
    let to_read: u64 = ranged
        .iter()
        .flat_map(|f| reader::spans(f.clone(), read.span_gap, u64::MAX))
        .map(|s| s.range.end - s.range.start)
        .sum();
    let span_max = (to_read.div_ceil(concurrency.max(1) as u64) + (64 << 10))
        .max(32 << 20)
        .min(read.span_max.max(1));
    let mut spans: Vec<(usize, reader::Span)> = ranged
        .into_iter()
        .enumerate()
        .flat_map(|(i, f)| {
            reader::spans(f, read.span_gap, span_max)
                .into_iter()
                .map(move |s| (i, s))
        })
        .collect();
    spans.sort_by_key(|(_, s)| std::cmp::Reverse(s.range.end - s.range.start));
    spans
}

/// Decodes and writes every planned page: frames held in memory on
/// blocking threads, the others streamed span by span. Returns the XOR of
/// the page checksums and the bytes the spans read. The bodies held in
/// `opened` live as long as a batch still needs their frames.
async fn write_pages(
    bucket: &Bucket,
    w: &Arc<Writer>,
    mp: &MergePlan,
    opened: Vec<Opened>,
    opts: &RestoreOptions,
) -> Result<(u64, u64)> {
    let (held, ranged) = split_frames(mp, &opened, opts.fetch_batch);
    let locals: Vec<Option<reader::LocalFile>> = opened.iter().map(|o| o.local.clone()).collect();
    drop(opened);
    let spans = plan_spans(ranged, &opts.read, opts.concurrency);
    let frames = Arc::new(mp.frames.clone());
    let span_read = Arc::new(AtomicU64::new(0));

    let from_spans = futures::stream::iter(spans)
        .map(|(input, span)| {
            let (bucket, w, frames, span_read) =
                (bucket.clone(), w.clone(), frames.clone(), span_read.clone());
            let local = locals[input].clone();
            let batch = opts.fetch_batch;
            async move {
                let entries: Vec<_> = span.frames.iter().map(|&i| frames[i].entry).collect();
                let r = SpanReader::new(&bucket, &w.keys[input], &span, entries, batch)
                    .with_local(local);
                let positions = span.frames;
                let writer = w.clone();
                let (x, received) = r
                    .read_with(&bucket, move |b| {
                        writer.write(
                            positions[b.frames.clone()]
                                .iter()
                                .map(|&i| (&frames[i], b.frame(&frames[i].entry))),
                        )
                    })
                    .await?;
                span_read.fetch_add(received, Ordering::Relaxed);
                Ok::<u64, Error>(x)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_fold(0u64, |a, x| async move { Ok(a ^ x) });
    let from_memory = futures::stream::iter(held)
        .map(|batch| {
            let w = w.clone();
            async move {
                tokio::task::spawn_blocking(move || w.write(batch.iter().map(|(f, b)| (f, &b[..]))))
                    .await?
            }
        })
        .buffer_unordered(2)
        .try_fold(0u64, |a, x| async move { Ok(a ^ x) });
    let (x1, x2) = futures::try_join!(from_spans, from_memory)?;
    Ok((x1 ^ x2, span_read.load(Ordering::Relaxed)))
}

/// The report of a dry run: what [`restore_to_file`] would do.
pub fn dry_run_report(db: &str, plan: &RestorePlan) -> RestoreReport {
    RestoreReport {
        db: db.to_string(),
        txid: plan.txid,
        timestamp_ms: plan.timestamp_ms,
        timestamp: rfc3339(plan.timestamp_ms),
        timestamp_exact: plan.timestamp_exact,
        files: plan.files.iter().map(|f| f.key.clone()).collect(),
        files_bytes: plan.bytes,
        bytes_read: 0,
        page_size: 0,
        commit: 0,
        pages: 0,
        checksum: None,
        output: String::new(),
        requests: RequestCounts::default(),
    }
}

/// Decodes frames and writes their pages into the temporary file.
struct Writer {
    keys: Arc<Vec<String>>,
    ps: ltx_core::PageSize,
    file: Arc<std::fs::File>,
    /// Whether page checksums are needed (the files track checksums).
    checksums: bool,
    done: AtomicU64,
    total: u64,
    progress: Option<Progress>,
}

impl Writer {
    /// Pages written with one `pwrite` when their numbers follow each other.
    const RUN: usize = 64;

    /// Decodes and writes one batch (any pages, any order); returns the XOR
    /// of its page checksums (0 when not needed).
    fn write<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a PlannedFrame, &'a [u8])>,
    ) -> Result<u64> {
        thread_local! {
            // One run buffer per (blocking) thread, reused.
            static RUN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        RUN.with(|b| {
            let mut buf = b.borrow_mut();
            buf.resize(self.ps.bytes() * Self::RUN, 0);
            self.write_with(batch, &mut buf)
        })
    }

    fn write_with<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a PlannedFrame, &'a [u8])>,
        buf: &mut [u8],
    ) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let psz = self.ps.bytes();
        // Pages in `buf`: `n`, the first being `first`.
        let (mut first, mut n) = (0u32, 0usize);
        let flush = |first: u32, n: usize, buf: &[u8]| -> Result<()> {
            if n > 0 {
                self.file
                    .write_all_at(&buf[..n * psz], u64::from(first - 1) * psz as u64)
                    .context("writing the restored database")?;
            }
            Ok(())
        };
        let mut x = 0u64;
        let mut bytes = 0u64;
        for (f, frame) in batch {
            let pgno = f.entry.pgno;
            if n == Self::RUN || (n > 0 && pgno != first + n as u32) {
                flush(first, n, buf)?;
                n = 0;
            }
            if n == 0 {
                first = pgno;
            }
            let page = &mut buf[n * psz..(n + 1) * psz];
            let d = decode_frame(frame, self.ps, page).map_err(|e| {
                Error::format(
                    self.keys[f.input].clone(),
                    e.offset_by(f.entry.offset).page(pgno),
                )
            })?;
            if d.header.pgno != pgno {
                return Err(Error::invalid(format!(
                    "{}: the page index says page {} at offset {}, the frame holds page {}",
                    self.keys[f.input], pgno, f.entry.offset, d.header.pgno
                )));
            }
            if self.checksums {
                x ^= page_checksum(pgno, page).0;
            }
            n += 1;
            bytes += frame.len() as u64;
        }
        flush(first, n, buf)?;
        let d = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(p) = &self.progress {
            p(d, self.total);
        }
        Ok(x)
    }
}
