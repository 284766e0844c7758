//! Restoring a database file from a bucket (I/O).
//!
//! [`plan`] lists the database and asks [`crate::restore::plan_restore`]
//! for the fewest files reaching the target. [`restore_to_file`] reads each
//! file's header, tail and page index (ranged GETs), plans the merge with
//! ltx-core (newest copy of each page wins, pages above the final commit
//! dropped), checks that every page up to the commit is present, then
//! fetches only the winning frames in batches, several batches at once,
//! decodes them on blocking threads and writes each page in place into a
//! temporary file beside the output. The database checksum of the result
//! is computed on the way and must equal the last file's post-apply
//! checksum (when the files track checksums); then the file is fsynced,
//! renamed over the output and the directory fsynced. Any error removes the
//! temporary file: the output is untouched. Memory: a few batches of
//! compressed frames plus the page indexes.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use ltx_core::checksum::{page_checksum, DbChecksum};
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::PlannedFrame;
use ltx_core::{decode_frame, plan_merge, Checksum, MergeOptions, TxId};
use serde::Serialize;

use crate::catalog::{txid_serde, LtxObject};
use crate::restore::{plan_restore, RestorePlan, Target};
use crate::store::{frame_batches, Bucket, READ_CONCURRENCY};

/// Progress callback: (bytes of frames done, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;
/// A check run on the finished temporary file before it replaces the output.
pub type PreCommitCheck = Arc<dyn Fn(&FsPath) -> Result<()> + Send + Sync>;

/// Restore tuning.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Batches of frames in flight.
    pub concurrency: usize,
    /// Compressed bytes per batch.
    pub fetch_batch: u64,
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
    /// Bytes actually read (indexes and winning frames).
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
}

/// RFC 3339 form of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Lists `db` and plans a restore to `target`. Header timestamps are read
/// for every file when the target is a time, else only for the plan's files.
///
/// # Errors
/// Listing errors; no plan (the message says which TXIDs are reproducible).
pub async fn plan(
    bucket: &Bucket,
    db: &str,
    target: Target,
) -> Result<(RestorePlan, Vec<LtxObject>)> {
    let (mut catalog, _) = bucket.catalog(db).await?;
    let mut cache = Default::default();
    if matches!(target, Target::Time(_)) {
        bucket.fill_timestamps(&mut catalog, &mut cache).await?;
    }
    let mut plan =
        plan_restore(&catalog, target).map_err(|e| anyhow!("{}: {e}", bucket.location(db)))?;
    if !matches!(target, Target::Time(_)) {
        bucket.fill_timestamps(&mut plan.files, &mut cache).await?;
        if let Some(last) = plan.files.last().and_then(|f| f.timestamp_ms) {
            plan.timestamp_ms = last;
            plan.timestamp_exact = true;
        }
    }
    Ok((plan, catalog))
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
    if !opts.force && out.exists() {
        bail!("{} exists (use --force to replace it)", out.display());
    }
    let wal = PathBuf::from(format!("{}-wal", out.display()));
    if wal.exists() {
        bail!(
            "{} exists: a WAL beside the output would be applied over the restored file; remove it first",
            wal.display()
        );
    }
    let files: Vec<(String, u64)> = plan.files.iter().map(|f| (f.key.clone(), f.size)).collect();
    let metas: Vec<_> = futures::stream::iter(files)
        .map(|(key, size)| {
            let bucket = bucket.clone();
            async move { bucket.read_meta(&key, size).await }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let no_checksum = metas.iter().any(|m| m.header.no_checksum());
    let inputs: Vec<_> = metas.iter().map(|m| m.merge_input()).collect();
    let mp = plan_merge(
        &inputs,
        &MergeOptions {
            flags: if no_checksum {
                HEADER_FLAG_NO_CHECKSUM
            } else {
                0
            },
            allow_gaps: false,
        },
    )
    .map_err(|e| {
        anyhow!(
            "{}: the planned files do not chain: {e}",
            bucket.location(db)
        )
    })?;
    for w in metas.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if !no_checksum
            && b.header.min_txid.0 == a.header.max_txid.0 + 1
            && b.header.pre_apply_checksum != a.trailer.post_apply_checksum
        {
            bail!(
                "{}: {} starts from database checksum {} but {} ends at {}",
                bucket.url(),
                b.key,
                b.header.pre_apply_checksum,
                a.key,
                a.trailer.post_apply_checksum
            );
        }
    }
    let ps = mp.header.page_size;
    let commit = mp.header.commit;
    let lock = ps.lock_pgno();
    let mut want: u32 = 1;
    for f in &mp.frames {
        if want == lock {
            want += 1;
        }
        if f.entry.pgno != want {
            bail!(
                "{}: page {want} is in none of the {} files (the chain cannot rebuild the database at {})",
                bucket.location(db),
                metas.len(),
                mp.header.max_txid
            );
        }
        want += 1;
    }
    if want == lock {
        want += 1;
    }
    if want <= commit {
        bail!(
            "{}: page {want} is in none of the {} files (commit is {commit})",
            bucket.location(db),
            metas.len()
        );
    }

    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", out.display()))?
        .to_string_lossy()
        .to_string();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.restore-{}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let guard = TempGuard(Some(tmp.clone()));
    file.set_len(u64::from(commit) * ps.bytes() as u64)
        .with_context(|| format!("sizing {}", tmp.display()))?;
    let file = Arc::new(file);

    let keys: Arc<Vec<String>> = Arc::new(metas.iter().map(|m| m.key.clone()).collect());
    let frames = Arc::new(mp.frames.clone());
    let total: u64 = frames.iter().map(|f| f.entry.size).sum();
    let done = Arc::new(AtomicU64::new(0));
    let batches = frame_batches(&frames, opts.fetch_batch);
    let xors: Vec<u64> = futures::stream::iter(batches)
        .map(|r| {
            let (bucket, keys, frames, file, done) = (
                bucket.clone(),
                keys.clone(),
                frames.clone(),
                file.clone(),
                done.clone(),
            );
            let progress = opts.progress.clone();
            async move {
                let batch: Vec<PlannedFrame> = frames[r].to_vec();
                let data = bucket.read_frames(&keys, &batch).await?;
                let n: u64 = data.iter().map(|d| d.len() as u64).sum();
                let x = tokio::task::spawn_blocking(move || {
                    write_pages(&keys, &batch, &data, ps, &file)
                })
                .await??;
                let d = done.fetch_add(n, Ordering::Relaxed) + n;
                if let Some(p) = &progress {
                    p(d, total);
                }
                Ok::<u64, anyhow::Error>(x)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    let mut sum = DbChecksum::new(ps);
    for x in xors {
        sum.add_checksum(Checksum(x));
    }
    let checksum = if no_checksum || commit == 0 {
        None
    } else {
        if sum.value() != mp.post_apply {
            bail!(
                "{}: the restored pages have database checksum {} but {} says {} after {}: refusing the result",
                bucket.location(db),
                sum.value(),
                keys.last().map_or("", |k| k.as_str()),
                mp.post_apply,
                mp.header.max_txid
            );
        }
        Some(sum.value().to_string())
    };
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    if let Some(check) = &opts.pre_commit {
        check(&tmp)?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    guard.disarm();
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let last = metas.last().expect("plan has files");
    Ok(RestoreReport {
        db: db.to_string(),
        txid: mp.header.max_txid,
        timestamp_ms: last.header.timestamp,
        timestamp: rfc3339(last.header.timestamp),
        timestamp_exact: true,
        files: keys.to_vec(),
        files_bytes: plan.bytes,
        bytes_read: total
            + metas
                .iter()
                .map(|m| m.index.len() as u64 * 4 + 124)
                .sum::<u64>(),
        page_size: ps.bytes() as u32,
        commit,
        pages: mp.frames.len() as u64,
        checksum,
        output: out.display().to_string(),
    })
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
    }
}

struct TempGuard(Option<PathBuf>);
impl TempGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}
impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Decodes and writes one batch; returns the XOR of its page checksums.
fn write_pages(
    keys: &[String],
    batch: &[PlannedFrame],
    data: &[bytes::Bytes],
    ps: ltx_core::PageSize,
    file: &std::fs::File,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut page = vec![0u8; ps.bytes()];
    let mut x = 0u64;
    for (f, frame) in batch.iter().zip(data) {
        let d = decode_frame(frame, ps, &mut page).map_err(|e| {
            anyhow!(
                "{}: {}",
                keys[f.input],
                e.offset_by(f.entry.offset).page(f.entry.pgno)
            )
        })?;
        if d.header.pgno != f.entry.pgno {
            bail!(
                "{}: the page index says page {} at offset {}, the frame holds page {}",
                keys[f.input],
                f.entry.pgno,
                f.entry.offset,
                d.header.pgno
            );
        }
        x ^= page_checksum(f.entry.pgno, &page).0;
        file.write_all_at(&page, u64::from(f.entry.pgno - 1) * ps.bytes() as u64)
            .context("writing the restored database")?;
    }
    Ok(x)
}
