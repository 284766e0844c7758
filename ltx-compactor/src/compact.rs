//! One compaction pass over one database on object storage (I/O).
//!
//! List the database's prefix (one paginated listing, under the lease),
//! read header timestamps (remembered per database across passes: keys
//! are never overwritten, so a header is read once per process), ask
//! [`crate::policy::plan_pass`] what is due, and run the compactions in
//! order:
//! - **Merge**: read each input's header, tail and page index (ranged GETs),
//!   plan with ltx-core's [`plan_merge`], then fetch only the winning frames
//!   with `get_ranges`, in batches (the next batch is fetched while the
//!   current one is checked and written), decode each frame to check it and
//!   hash it, and stream the output: a single `PutMode::Create` PUT when it
//!   stays under [`PassOptions::single_put_limit`], else a multipart upload.
//!   A snapshot output's pages are checksummed and must equal the inputs'
//!   post-apply checksum before the upload completes.
//! - **Copy**: a server-side `copy_if_not_exists` where the store has one,
//!   else a streamed GET and conditional PUT. Never re-encoded.
//!
//! Every output is read back (header, tail, page index) and compared with
//! what was written before anything depends on it. An output key that
//! already exists (a pass killed after its upload) is accepted only if it
//! is exactly the planned file; it is never overwritten. Deletions run only
//! after every compaction of the pass succeeded, and the lease is checked
//! before every write and delete. Finally every level's contiguity is
//! checked on the catalog as the pass left it (the listing, less what was
//! deleted, plus what was written and read back), which is also what the
//! next round compares its listing with ([`crate::fleet::same_listing`]).
//!
//! Multipart uploads: object_store 0.14 cannot make the completion of a
//! multipart upload conditional, so a large output is uploaded only after
//! a HEAD shows its key free, under the lease (checked again just before
//! completion); the single-PUT path is conditional at the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use ltx_core::checksum::DbChecksum;
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::prepare_frame;
use ltx_core::{plan_merge, MergeOptions, MergePlan};
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::catalog::{sort_catalog, DbLocation, LtxObject};
use crate::error::{Context, Error, Result};
use crate::fleet::{carry_timestamps, catalog_of, entries_of, FileEntry};
use crate::lease::Lease;
use crate::owner::{foreign_ladder_files, refusal, OwnerRecord, RECORD_NAME};
use crate::policy::{
    check_contiguity, check_ladder, plan_pass_at, sort_deletions, Compaction, CompactionKind,
    Config, PassPlan, Shape,
};
use crate::reader::{self, Opened, ReadOptions};
pub use crate::report::{PassReport, Written};
use crate::store::{frame_batches, Bucket, ObjectMeta};

/// Tuning of a pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Plan only: list, read timestamps, report the plan; write nothing.
    pub dry_run: bool,
    /// Outputs up to this size are written with one conditional PUT.
    pub single_put_limit: usize,
    /// Multipart part size (S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Compressed bytes of frames fetched per batch.
    pub fetch_batch: u64,
    /// How inputs are read (whole GETs for small inputs, kept in memory
    /// within a budget; header and index, then spans, for large ones).
    pub read: ReadOptions,
    /// Adopt level files another writer added (see [`crate::owner`]):
    /// once, after that writer (Litestream's own compaction) was stopped.
    pub adopt: bool,
}

impl PassOptions {
    /// Bytes of output held before they are handed to the sink: a part, or
    /// less when the single-PUT limit is smaller, so that every output over
    /// the limit really is a multipart upload.
    fn flush_at(&self) -> usize {
        self.part_size
            .min(self.single_put_limit.saturating_add(1))
            .max(1)
    }
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            adopt: false,
            dry_run: false,
            single_put_limit: 16 << 20,
            part_size: 8 << 20,
            fetch_batch: 4 << 20,
            read: ReadOptions {
                concurrency: 16,
                ..ReadOptions::default()
            },
        }
    }
}

/// Per level: `now_ms` minus the time of its newest file.
pub fn level_lag(catalog: &[LtxObject], now_ms: i64) -> std::collections::BTreeMap<u8, i64> {
    let mut lag = std::collections::BTreeMap::new();
    for o in catalog {
        let l = now_ms - o.time_ms();
        let e = lag.entry(o.level).or_insert(l);
        *e = (*e).min(l);
    }
    lag
}

/// A compactor: a bucket, a policy, tuning, and the state kept between
/// passes (per database, its files as the last pass or round left them,
/// with the header timestamps already read; the stop flag; counters). The one entry point for compaction: [`Compactor::pass`] runs
/// one pass over one database under a lease the caller holds;
/// [`Compactor::run`] is the job (`ltx-compactor run`): every database
/// under the bucket, under leases it takes, once or at every slot boundary
/// until shut down.
#[derive(Debug)]
pub struct Compactor {
    /// Where the databases are.
    pub bucket: Bucket,
    /// The policy.
    pub cfg: Config,
    /// Tuning.
    pub opts: PassOptions,
    /// Per database: its files as the last pass or round saw or left
    /// them, with the header timestamps read (keys are never overwritten).
    known: std::sync::Mutex<HashMap<String, Vec<FileEntry>>>,
    /// Set to ask running passes to stop at the next safe point.
    stop: AtomicBool,
    /// Counters of the passes run by [`Compactor::run`].
    metrics: crate::metrics::Metrics,
    /// Rounds started by [`Compactor::round`].
    pub(crate) rounds: std::sync::atomic::AtomicU64,
}

impl Compactor {
    /// A compactor with nothing cached.
    pub fn new(bucket: Bucket, cfg: Config, opts: PassOptions) -> Compactor {
        let metrics = crate::metrics::Metrics::counting(bucket.counter());
        Compactor {
            bucket,
            cfg,
            opts,
            known: Default::default(),
            stop: AtomicBool::new(false),
            metrics,
            rounds: Default::default(),
        }
    }

    /// What the compactor remembers of database `db` (its files, with the
    /// header timestamps read), if anything.
    pub fn known(&self, db: &str) -> Option<Vec<FileEntry>> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(db)
            .cloned()
    }

    /// Remembers database `db`'s files.
    pub(crate) fn remember(&self, db: &str, files: Vec<FileEntry>) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(db.to_string(), files);
    }

    /// Remembers database `db`'s files unless something is known of it
    /// already (a state loaded from an earlier run: what this process
    /// learnt itself wins).
    pub(crate) fn remember_loaded(&self, db: String, files: Vec<FileEntry>) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(db)
            .or_insert(files);
    }

    /// Calls `f` with everything remembered (database → files), under
    /// the lock: `f` must not block on other work of the compactor.
    pub(crate) fn with_known<R>(&self, f: impl FnOnce(&HashMap<String, Vec<FileEntry>>) -> R) -> R {
        f(&self.known.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Forgets every database `keep` says no to (gone from the root, or
    /// another shard's).
    pub(crate) fn forget_unless(&self, keep: impl Fn(&str) -> bool) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|db, _| keep(db));
    }

    /// Databases remembered.
    pub fn known_databases(&self) -> usize {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Runs one pass over database `db` at time `now_ms` (the policy
    /// clock) under `lease`: list, plan, compact, delete what retention
    /// allows, check contiguity (see the module docs). The report's
    /// `requests` are those of [`Compactor::bucket`] so far. Header
    /// timestamps read by earlier passes (or rounds) of this compactor are
    /// not read again.
    ///
    /// # Errors
    /// Store errors, corrupt inputs, outputs that fail their read-back, a
    /// lost lease ([`Error::is_lease_lost`]). Nothing is deleted after an
    /// error.
    pub async fn pass(&self, db: &str, now_ms: i64, lease: &Lease) -> Result<PassReport> {
        self.pass_on(&self.bucket, db, now_ms, lease).await
    }

    /// [`Compactor::pass`] through `bucket` (the compactor's bucket, or a
    /// clone of it with a request counter of its own).
    pub(crate) async fn pass_on(
        &self,
        bucket: &Bucket,
        db: &str,
        now_ms: i64,
        lease: &Lease,
    ) -> Result<PassReport> {
        let listed = bucket.list_db(db).await?;
        let mut files = entries_of(&listed);
        if let Some(prev) = self.known(db) {
            carry_timestamps(&prev, &mut files);
        }
        let mut catalog = catalog_of(db, &files);
        bucket
            .fill_timestamps(&mut catalog, &mut HashMap::new())
            .await?;
        self.remember(db, entries_of(&catalog));
        let (mut r, after) = pass_inner(
            bucket, db, catalog, &self.cfg, now_ms, lease, &self.opts, &self.stop,
        )
        .await?;
        self.remember(db, entries_of(&after));
        r.requests = bucket.requests();
        Ok(r)
    }

    /// Asks running passes to stop at the next safe point (between
    /// compactions, before deletions; the report says `abandoned`) and
    /// [`Compactor::run`] to return after them.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether [`Compactor::request_stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Counters of the passes [`Compactor::run`] ran (Prometheus text:
    /// [`crate::metrics::Metrics::render`]).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }
}

/// The catalog after a pass: `catalog` less the `deleted` keys, plus the
/// `written` outputs (at time `now_ms`, until a listing says better).
fn after_pass(
    catalog: &[LtxObject],
    plan: &PassPlan,
    written: &[Written],
    deleted: &[String],
    now_ms: i64,
) -> Vec<LtxObject> {
    let gone: std::collections::HashSet<&str> = deleted.iter().map(String::as_str).collect();
    let mut out: Vec<LtxObject> = catalog
        .iter()
        .filter(|o| !gone.contains(o.key.as_str()))
        .cloned()
        .collect();
    for w in written {
        if out.iter().any(|o| o.key == w.key) || gone.contains(w.key.as_str()) {
            continue;
        }
        if let Some(c) = plan.compactions.iter().find(|c| c.output_key == w.key) {
            let mut o = c.output_object(w.size, now_ms);
            o.timestamp_ms = Some(w.timestamp_ms);
            out.push(o);
        }
    }
    sort_catalog(&mut out);
    out
}

/// One pass over `catalog` (listed under `lease`, timestamps filled):
/// the report and the catalog as the pass left it.
#[allow(clippy::too_many_arguments)]
async fn pass_inner(
    bucket: &Bucket,
    db: &str,
    catalog: Vec<LtxObject>,
    cfg: &Config,
    now_ms: i64,
    lease: &Lease,
    opts: &PassOptions,
    stop: &AtomicBool,
) -> Result<(PassReport, Vec<LtxObject>)> {
    let mut report = PassReport {
        db: db.to_string(),
        location: bucket.location(db),
        catalog_files: catalog.len(),
        level_lag_ms: level_lag(&catalog, now_ms),
        ..Default::default()
    };
    let Some(loc) = DbLocation::detect(&catalog) else {
        return Ok((report, catalog));
    };
    let loc = DbLocation {
        db: db.to_string(),
        ..loc
    };
    // Another writer's level files: refuse rather than fight it.
    let record_key = crate::store::join(db, RECORD_NAME);
    let (record, adopting) = match read_record(bucket, &record_key).await? {
        Some(r) if !opts.adopt => {
            let foreign = foreign_ladder_files(&catalog, &r);
            if !foreign.is_empty() {
                report.refused = Some(refusal(&report.location, &foreign));
                return Ok((report, catalog));
            }
            (r, false)
        }
        _ => (OwnerRecord::adopting(&catalog, now_ms), true),
    };
    report.plan = plan_pass_at(&catalog, cfg, now_ms, &loc);
    if opts.dry_run {
        return Ok((report, catalog));
    }
    let planned = report
        .plan
        .compactions
        .iter()
        .map(|c| (c.output_level, c.output_key.as_str()));
    let next = record.before_writing(&catalog, planned, now_ms);
    if let Some(r) = next.as_ref().or(adopting.then_some(&record)) {
        lease.check().await?;
        let body = serde_json::to_vec_pretty(r).expect("record serialises");
        bucket
            .store()
            .put(&Path::from(record_key.as_str()), PutPayload::from(body))
            .await
            .context_with(|| format!("{}: writing {record_key}", bucket.url()))?;
    }
    let mut sizes: HashMap<String, u64> = catalog.iter().map(|o| (o.key.clone(), o.size)).collect();
    let after = |r: &PassReport| after_pass(&catalog, &r.plan, &r.written, &r.deleted, now_ms);
    for c in &report.plan.compactions.clone() {
        if stop.load(Ordering::Relaxed) {
            report.abandoned = true;
            let a = after(&report);
            return Ok((report, a));
        }
        let w = match c.kind {
            CompactionKind::Merge => merge_one(bucket, c, &sizes, lease, opts).await,
            CompactionKind::Copy => copy_one(bucket, c, &sizes, lease, opts).await,
        }
        .context_with(|| format!("{}: compacting into {}", bucket.url(), c.output_key))?;
        sizes.insert(w.key.clone(), w.size);
        report.bytes_written += if w.existed { 0 } else { w.size };
        report.bytes_read += w.bytes_read;
        report.written.push(w);
    }
    if stop.load(Ordering::Relaxed) {
        report.abandoned = true;
        let a = after(&report);
        return Ok((report, a));
    }
    // One at a time, finer levels first, in the order the shape needs
    // (`sort_deletions`: newest first within a level for cumulative
    // windows, oldest first for the ladder): then every intermediate state
    // is as contiguous as the start and the end, whatever point a failure
    // or a kill stops us at.
    let mut deletions: Vec<&LtxObject> = report.plan.deletions.iter().collect();
    sort_deletions(&mut deletions, cfg.shape);
    let deletions: Vec<String> = deletions.into_iter().map(|o| o.key.clone()).collect();
    for k in deletions {
        if stop.load(Ordering::Relaxed) {
            report.abandoned = true;
            break;
        }
        lease.check().await?;
        match bucket.store().delete(&Path::from(k.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.deleted.push(k),
            Err(e) => return Err(e).context_with(|| format!("{}: deleting {k}", bucket.url())),
        }
    }
    let a = after(&report);
    report.contiguity = contiguity(cfg, &a);
    Ok((report, a))
}

/// The contiguity problems of `catalog` for the configuration's shape.
pub fn contiguity(cfg: &Config, catalog: &[LtxObject]) -> Vec<String> {
    match cfg.shape {
        Shape::Cumulative => check_contiguity(catalog),
        Shape::Ladder => check_ladder(catalog),
    }
}

/// The compactor's record of a database ([`crate::owner`]); `None` when
/// there is none (or it cannot be parsed: it is then rewritten, adopting).
async fn read_record(bucket: &Bucket, key: &str) -> Result<Option<OwnerRecord>> {
    match bucket.store().get(&Path::from(key)).await {
        Ok(r) => {
            let b = r
                .bytes()
                .await
                .context_with(|| format!("{}: reading {key}", bucket.url()))?;
            Ok(serde_json::from_slice(&b).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).context_with(|| format!("{}: reading {key}", bucket.url())),
    }
}

async fn open_inputs(
    bucket: &Bucket,
    inputs: &[LtxObject],
    sizes: &HashMap<String, u64>,
    opts: &ReadOptions,
) -> Result<Vec<Opened>> {
    // Owned items: closures over borrowed items make the future !Send
    // (rust-lang/rust#102211), and callers spawn passes.
    let wanted: Vec<(String, Option<u64>)> = inputs
        .iter()
        .map(|i| {
            let known = sizes.get(&i.key).copied().filter(|&s| s > 0);
            (i.key.clone(), known.or((i.size > 0).then_some(i.size)))
        })
        .collect();
    let budget = std::sync::Arc::new(reader::HoldBudget::new(opts.hold_budget));
    futures::stream::iter(wanted)
        .map(|(key, size)| {
            let (bucket, budget, opts) = (bucket.clone(), budget.clone(), opts.clone());
            async move {
                let size = match size {
                    Some(s) => s,
                    None => bucket.size_of(&key).await?.ok_or_else(|| {
                        Error::invalid(format!("{}: input {key} is missing", bucket.url()))
                    })?,
                };
                reader::open(&bucket, &key, size, &budget, &opts).await
            }
        })
        .buffered(opts.concurrency.max(1))
        .try_collect()
        .await
}

/// Where an output's bytes go: memory until the single-PUT limit, then a
/// multipart upload.
/// Every object is written with its header timestamp where Litestream
/// reads an object's time (see [`Bucket::time_attributes`]).
struct Sink<'a> {
    bucket: &'a Bucket,
    key: String,
    lease: &'a Lease,
    opts: &'a PassOptions,
    buf: Vec<u8>,
    upload: Option<WriteMultipart>,
    size: u64,
    timestamp_ms: i64,
}

impl<'a> Sink<'a> {
    fn new(
        bucket: &'a Bucket,
        key: &str,
        lease: &'a Lease,
        opts: &'a PassOptions,
        timestamp_ms: i64,
    ) -> Self {
        Sink {
            bucket,
            key: key.to_string(),
            lease,
            opts,
            buf: Vec::new(),
            upload: None,
            size: 0,
            timestamp_ms,
        }
    }

    async fn write(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.size += out.len() as u64;
        if let Some(w) = self.upload.as_mut() {
            w.wait_for_capacity(2)
                .await
                .context_with(|| format!("uploading {}", self.key))?;
            w.write(out);
            out.clear();
            return Ok(());
        }
        self.buf.append(out);
        if self.buf.len() > self.opts.single_put_limit {
            self.lease.check().await?;
            if self.bucket.size_of(&self.key).await?.is_some() {
                return Err(Error::invalid(format!(
                    "{} appeared while it was being written",
                    self.key
                )));
            }
            let up = self
                .bucket
                .store()
                .put_multipart_opts(
                    &Path::from(self.key.as_str()),
                    PutMultipartOptions {
                        attributes: self.bucket.time_attributes(self.timestamp_ms),
                        ..Default::default()
                    },
                )
                .await
                .context_with(|| format!("starting multipart upload of {}", self.key))?;
            let mut w = WriteMultipart::new_with_chunk_size(up, self.opts.part_size);
            w.write(&self.buf);
            self.buf = Vec::new();
            self.upload = Some(w);
        }
        Ok(())
    }

    /// Completes the object; returns its size.
    async fn finish(mut self, mut out: Vec<u8>) -> Result<(u64, bool)> {
        self.size += out.len() as u64;
        self.lease.check().await?;
        if let Some(mut w) = self.upload.take() {
            w.write(&out);
            w.finish()
                .await
                .context_with(|| format!("completing multipart upload of {}", self.key))?;
            self.bucket.stamp(&self.key, self.timestamp_ms)?;
            return Ok((self.size, true));
        }
        self.buf.append(&mut out);
        let n = self.buf.len() as u64;
        self.bucket
            .store()
            .put_opts(
                &Path::from(self.key.as_str()),
                PutPayload::from(std::mem::take(&mut self.buf)),
                PutOptions {
                    mode: PutMode::Create,
                    attributes: self.bucket.time_attributes(self.timestamp_ms),
                    ..Default::default()
                },
            )
            .await
            .context_with(|| format!("writing {}", self.key))?;
        self.bucket.stamp(&self.key, self.timestamp_ms)?;
        Ok((n, false))
    }

    async fn abort(mut self) {
        if let Some(w) = self.upload.take() {
            let _ = w.abort().await;
        }
    }
}

/// Checks a written (or pre-existing) output against what was planned.
async fn check_output(
    bucket: &Bucket,
    key: &str,
    size: u64,
    plan: &MergePlan,
    trailer: Option<&ltx_core::Trailer>,
) -> Result<ObjectMeta> {
    let m = bucket.read_meta(key, size).await?;
    let h = &m.header;
    let p = &plan.header;
    let same = h.min_txid == p.min_txid
        && h.max_txid == p.max_txid
        && h.commit == p.commit
        && h.page_size == p.page_size
        && h.pre_apply_checksum == p.pre_apply_checksum
        && m.trailer.post_apply_checksum == plan.post_apply
        && m.index.len() == plan.frames.len()
        && m.index
            .entries()
            .iter()
            .zip(&plan.frames)
            .all(|(a, b)| a.pgno == b.entry.pgno)
        && trailer.is_none_or(|t| *t == m.trailer && *h == *p);
    if !same {
        return Err(Error::invalid(format!(
            "{key}: the stored object does not match the planned merge ({}-{}, commit {}, {} pages)",
            p.min_txid,
            p.max_txid,
            p.commit,
            plan.frames.len()
        )));
    }
    Ok(m)
}

async fn merge_one(
    bucket: &Bucket,
    c: &Compaction,
    sizes: &HashMap<String, u64>,
    lease: &Lease,
    opts: &PassOptions,
) -> Result<Written> {
    let opened = open_inputs(bucket, &c.inputs, sizes, &opts.read).await?;
    let mut bytes_read: u64 = opened.iter().map(|o| o.bytes_read).sum();
    let flags = if opened.iter().any(|o| o.meta.header.no_checksum()) {
        HEADER_FLAG_NO_CHECKSUM
    } else {
        0
    };
    let inputs: Vec<_> = opened.iter().map(|o| o.meta.merge_input()).collect();
    let plan = plan_merge(
        &inputs,
        &MergeOptions {
            flags,
            allow_gaps: false,
        },
    )
    .map_err(|e| Error::format(format!("planning merge of {} inputs", inputs.len()), e))?;
    if plan.header.min_txid != c.min_txid || plan.header.max_txid != c.max_txid {
        return Err(Error::invalid(format!(
            "inputs cover {}-{}, the policy planned {}-{}",
            plan.header.min_txid, plan.header.max_txid, c.min_txid, c.max_txid
        )));
    }
    let written = |size, existed, multipart, bytes_read, m: ObjectMeta| Written {
        key: c.output_key.clone(),
        kind: c.kind,
        inputs: c.inputs.len(),
        size,
        timestamp_ms: m.header.timestamp,
        bytes_read,
        existed,
        multipart,
    };
    if let Some(size) = bucket.size_of(&c.output_key).await? {
        let m = check_output(bucket, &c.output_key, size, &plan, None).await?;
        return Ok(written(size, true, false, bytes_read, m));
    }
    drop(inputs);
    let mut sink = Sink::new(bucket, &c.output_key, lease, opts, plan.header.timestamp);
    let opened = std::sync::Arc::new(opened);
    let res = write_merge(bucket, &plan, opened, &mut sink, &mut bytes_read).await;
    let (out, trailer) = match res {
        Ok(v) => v,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    let (size, multipart) = sink.finish(out).await?;
    let m = check_output(bucket, &c.output_key, size, &plan, Some(&trailer)).await?;
    Ok(written(size, false, multipart, bytes_read, m))
}

async fn write_merge(
    bucket: &Bucket,
    plan: &MergePlan,
    inputs: std::sync::Arc<Vec<Opened>>,
    sink: &mut Sink<'_>,
    bytes_read: &mut u64,
) -> Result<(Vec<u8>, ltx_core::Trailer)> {
    let keys: Vec<String> = inputs.iter().map(|o| o.meta.key.clone()).collect();
    let ps = plan.header.page_size;
    let mut out = Vec::with_capacity(sink.opts.part_size.min(64 << 20) + 1024);
    let mut enc = plan
        .encoder(&mut out)
        .map_err(|e| Error::format("output header", e))?;
    let mut page = vec![0u8; ps.bytes()];
    let mut db = (plan.header.is_snapshot() && plan.post_apply.0 != 0).then(|| DbChecksum::new(ps));
    let bs = frame_batches(&plan.frames, sink.opts.fetch_batch);
    let ro = sink.opts.read.clone();
    let spawn = |r: &std::ops::Range<usize>| {
        let (bucket, inputs, batch, ro) = (
            bucket.clone(),
            inputs.clone(),
            plan.frames[r.clone()].to_vec(),
            ro.clone(),
        );
        tokio::spawn(async move {
            reader::frames_of(&bucket, &inputs, &batch, ro.span_gap, ro.span_max, 8).await
        })
    };
    let mut pending = bs.first().map(spawn);
    for (bi, r) in bs.iter().enumerate() {
        let (data, read) = pending.take().expect("batch pending").await??;
        *bytes_read += read;
        pending = bs.get(bi + 1).map(spawn);
        for (f, frame) in plan.frames[r.clone()].iter().zip(&data) {
            let p = prepare_frame(plan, f, frame, &mut page)
                .map_err(|e| Error::format(keys[f.input].clone(), e))?;
            if let Some(d) = db.as_mut() {
                d.add(f.entry.pgno, &page);
            }
            plan.write_frame(&mut enc, &mut out, frame, &p)
                .map_err(|e| Error::format("output", e))?;
        }
        if out.len() >= sink.opts.flush_at() {
            sink.write(&mut out).await?;
        }
    }
    if let Some(d) = db {
        if d.value() != plan.post_apply {
            return Err(Error::invalid(format!(
                "snapshot pages have database checksum {} but the last input's post-apply checksum is {}: inputs are inconsistent",
                d.value(),
                plan.post_apply
            )));
        }
    }
    let trailer = enc
        .finish(&mut out, plan.post_apply)
        .map_err(|e| Error::format("output", e))?;
    Ok((out, trailer))
}

async fn copy_one(
    bucket: &Bucket,
    c: &Compaction,
    sizes: &HashMap<String, u64>,
    lease: &Lease,
    opts: &PassOptions,
) -> Result<Written> {
    let [input] = &c.inputs[..] else {
        return Err(Error::invalid("a copy needs exactly one input"));
    };
    let src = open_inputs(bucket, std::slice::from_ref(input), sizes, &opts.read)
        .await?
        .remove(0)
        .meta;
    let same =
        |m: &ObjectMeta| m.header == src.header && m.trailer == src.trailer && m.size == src.size;
    let written = |existed, multipart| Written {
        key: c.output_key.clone(),
        kind: c.kind,
        inputs: 1,
        size: src.size,
        timestamp_ms: src.header.timestamp,
        bytes_read: if existed { 0 } else { src.size },
        existed,
        multipart,
    };
    if let Some(size) = bucket.size_of(&c.output_key).await? {
        let m = bucket.read_meta(&c.output_key, size).await?;
        if !same(&m) {
            return Err(Error::invalid(format!(
                "{} exists and differs from {}",
                c.output_key, src.key
            )));
        }
        return Ok(written(true, false));
    }
    lease.check().await?;
    let (from, to) = (
        Path::from(src.key.as_str()),
        Path::from(c.output_key.as_str()),
    );
    let mut multipart = false;
    // A server-side copy keeps the source's metadata: it is used only when
    // that already carries the header time (Litestream's L0 files do), or
    // on a local directory (a hard link, whose time is the source's).
    let keeps_time =
        bucket.local_root().is_some() || src.litestream_ms == Some(src.header.timestamp);
    let copied = if keeps_time {
        bucket.store().copy_if_not_exists(&from, &to).await
    } else {
        Err(object_store::Error::NotImplemented {
            operation: "a copy that sets the litestream-timestamp metadata".into(),
            implementer: "ltx-compactor".into(),
        })
    };
    match copied {
        Ok(()) => bucket.stamp(&c.output_key, src.header.timestamp)?,
        Err(
            object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. },
        ) => {
            let mut sink = Sink::new(bucket, &c.output_key, lease, opts, src.header.timestamp);
            let res = async {
                let mut stream = bucket
                    .store()
                    .get(&from)
                    .await
                    .context_with(|| format!("reading {}", src.key))?
                    .into_stream();
                let mut out = Vec::new();
                let mut n = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.context_with(|| format!("reading {}", src.key))?;
                    n += chunk.len() as u64;
                    out.extend_from_slice(&chunk);
                    if out.len() >= opts.flush_at() {
                        sink.write(&mut out).await?;
                    }
                }
                if n != src.size {
                    return Err(Error::invalid(format!(
                        "{}: read {n} of {} bytes",
                        src.key, src.size
                    )));
                }
                Ok(out)
            }
            .await;
            match res {
                Ok(out) => multipart = sink.finish(out).await?.1,
                Err(e) => {
                    sink.abort().await;
                    return Err(e);
                }
            }
        }
        Err(e) => {
            return Err(e).context_with(|| format!("copying {} to {}", src.key, c.output_key))
        }
    }
    let size = bucket
        .size_of(&c.output_key)
        .await?
        .ok_or_else(|| Error::invalid(format!("{} missing after copy", c.output_key)))?;
    let m = bucket.read_meta(&c.output_key, size).await?;
    if !same(&m) {
        return Err(Error::invalid(format!(
            "{}: read-back differs from {}",
            c.output_key, src.key
        )));
    }
    Ok(written(false, multipart))
}
