//! A fault-injecting [`ObjectStore`] wrapper, to test the object-storage
//! job against the failures real buckets have.
//!
//! [`FaultStore`] wraps any store and, from a seeded PRNG, makes requests
//! fail (transiently or permanently), delays them, cuts GET bodies short,
//! shuffles and duplicates listing entries, and performs some writes *and
//! then* reports an error (the ambiguous outcome of a timed-out PUT). With
//! the default [`FaultConfig`], or after [`FaultStore::set_enabled`]`(false)`,
//! it is a pure pass-through, so a test can inject faults for a while, turn
//! them off and check that the job converges.
//!
//! What counts as one request (one draw of the PRNG, one `requests` count):
//! every [`ObjectStore`] call, each path of a `delete_stream`, and each
//! [`MultipartUpload::put_part`] / [`MultipartUpload::complete`] of an upload
//! it returned (`abort` is always passed through). For one request the
//! decisions are drawn when the call is made, in call order, so a
//! sequential caller sees the same faults for the same seed.
//!
//! Injected errors, matched by variant (their source is an [`InjectedFault`];
//! [`injected`] finds it):
//!
//! - transient: [`object_store::Error::Generic`] with store `"FaultStore"`,
//!   "injected transient fault (retryable)"; nothing reached the inner store;
//! - permanent: [`object_store::Error::PermissionDenied`] for the path,
//!   "injected permanent fault" (a `Generic` for calls without a path);
//!   nothing reached the inner store;
//! - after write: a `Generic` like the transient one, returned by `put_opts`
//!   or `complete` after the inner store accepted the write.
//!
//! Errors of the inner store (`NotFound`, `AlreadyExists` of a
//! [`object_store::PutMode::Create`], `Precondition` of a
//! [`object_store::PutMode::Update`], …) always
//! surface unchanged.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use ltx_compactor::faults::{FaultConfig, FaultStore};
//! use object_store::{memory::InMemory, path::Path, ObjectStoreExt};
//! let store = FaultStore::new(
//!     Arc::new(InMemory::new()),
//!     FaultConfig { seed: 7, fail_pct: 100.0, ..FaultConfig::default() },
//! );
//! assert!(store.put(&Path::from("a"), "x".into()).await.is_err());
//! store.set_enabled(false);
//! assert!(store.put(&Path::from("a"), "x".into()).await.is_ok());
//! assert_eq!(store.stats().transient, 1);
//! # }
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use ltx_core::rng::SplitMix64;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, Extensions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, Result, UploadPart,
};
use serde::Serialize;

/// The `store` name of injected `Generic` errors.
pub const STORE_NAME: &str = "FaultStore";

/// Which faults to inject, and how often. Percentages are of requests
/// (0.0..=100.0); the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultConfig {
    /// PRNG seed: the same seed and the same sequence of calls give the same faults.
    pub seed: u64,
    /// % of requests that fail before reaching the inner store.
    pub fail_pct: f64,
    /// Of those failures, % that are permanent (`PermissionDenied`) rather
    /// than transient (`Generic`, retryable).
    pub permanent_pct: f64,
    /// % of successful GETs (`get_opts` other than HEAD, `get_ranges`) whose
    /// body is cut short: the stream ends early / one range's `Bytes` is shorter.
    pub truncate_pct: f64,
    /// Each request first sleeps a random 0..=`max_delay_ms` milliseconds.
    pub max_delay_ms: u64,
    /// Return `list*` results in a random order.
    pub shuffle_listings: bool,
    /// % of listed objects returned twice.
    pub duplicate_pct: f64,
    /// % of listing pages after the first (each further
    /// [`crate::counting::LIST_PAGE`] entries) that fail: the listing
    /// yields a transient error there and ends, as a long listing whose
    /// next page request fails part-way.
    pub page_fail_pct: f64,
    /// % of `put_opts` / multipart `complete` calls that perform the write
    /// and then return an error.
    pub fail_after_write_pct: f64,
}

/// Counts of what the wrapper did (only while enabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultStats {
    /// Requests seen (see the module doc for what one request is).
    pub requests: u64,
    /// Requests failed with a transient error before reaching the inner store.
    pub transient: u64,
    /// Requests failed with a permanent error before reaching the inner store.
    pub permanent: u64,
    /// GET bodies (or one range of a `get_ranges`) cut short.
    pub truncated: u64,
    /// Listing entries returned twice.
    pub duplicated: u64,
    /// Writes that happened and were then reported as failed.
    pub fail_after_write: u64,
}

/// What an injected fault was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Failed before the inner store saw the request; retrying may succeed.
    Transient,
    /// Failed before the inner store saw the request; retrying will not help.
    Permanent,
    /// The inner store performed the write; the caller was told it failed.
    AfterWrite,
}

/// The source error of every error the wrapper injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// What kind of fault.
    pub kind: FaultKind,
    /// The operation it was injected into (`"put_opts"`, `"get_opts"`, …).
    pub op: &'static str,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Transient => {
                write!(f, "injected transient fault (retryable) in {}", self.op)
            }
            FaultKind::Permanent => write!(f, "injected permanent fault in {}", self.op),
            FaultKind::AfterWrite => write!(
                f,
                "injected transient fault (retryable) after the write in {}: the write happened",
                self.op
            ),
        }
    }
}

impl std::error::Error for InjectedFault {}

/// The injected fault behind `e`, if the wrapper made it up (`None` for
/// errors of the inner store).
pub fn injected(e: &object_store::Error) -> Option<&InjectedFault> {
    std::error::Error::source(e)?.downcast_ref::<InjectedFault>()
}

/// The store's generator: the workspace's SplitMix64 ([`ltx_core::rng`]),
/// with the reductions this store always used.
#[derive(Debug, Clone)]
struct SplitMix(SplitMix64);

impl SplitMix {
    fn new(seed: u64) -> SplitMix {
        SplitMix(SplitMix64::new(seed))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// True with probability `pct` %.
    fn chance(&mut self, pct: f64) -> bool {
        let u = self.0.unit();
        pct > 0.0 && u * 100.0 < pct
    }
    /// Uniform in `0..n` (0 when `n == 0`), by `%`.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The decisions for one request, drawn when the call is made.
#[derive(Debug, Clone, Copy)]
struct Draw {
    delay_ms: u64,
    /// `Some(permanent)` if the request fails before reaching the store.
    fail: Option<bool>,
    after_write: bool,
    truncate: bool,
    /// Seed of the request's own PRNG (truncation length, listing order, duplicates).
    seed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    transient: AtomicU64,
    permanent: AtomicU64,
    truncated: AtomicU64,
    duplicated: AtomicU64,
    fail_after_write: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    cfg: FaultConfig,
    enabled: AtomicBool,
    rng: Mutex<SplitMix>,
    n: Counters,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Shared {
    /// The start of every request: its decisions, the delay, then the
    /// injected failure if one was drawn. `Ok(None)` when disabled.
    async fn begin(&self, op: &'static str, path: Option<&Path>) -> Result<Option<Draw>> {
        let Some(d) = self.draw() else {
            return Ok(None);
        };
        pause(d.delay_ms).await;
        match self.fail(&d, op, path) {
            Some(e) => Err(e),
            None => Ok(Some(d)),
        }
    }

    /// The decisions for one request; `None` when disabled (pass-through).
    fn draw(&self) -> Option<Draw> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        bump(&self.n.requests);
        let c = &self.cfg;
        let mut r = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // Always the same number of draws per request, whatever is configured.
        let delay = r.next_u64();
        let fail = r.chance(c.fail_pct);
        let permanent = r.chance(c.permanent_pct);
        let after_write = r.chance(c.fail_after_write_pct);
        let truncate = r.chance(c.truncate_pct);
        let seed = r.next_u64();
        Some(Draw {
            delay_ms: if c.max_delay_ms == 0 {
                0
            } else {
                delay % (c.max_delay_ms.saturating_add(1)).max(1)
            },
            fail: fail.then_some(permanent),
            after_write: !fail && after_write,
            truncate: !fail && truncate,
            seed,
        })
    }

    /// The error a failing request returns (counted), if it fails.
    fn fail(&self, d: &Draw, op: &'static str, path: Option<&Path>) -> Option<object_store::Error> {
        let permanent = d.fail?;
        Some(if permanent {
            bump(&self.n.permanent);
            let source = Box::new(InjectedFault {
                kind: FaultKind::Permanent,
                op,
            });
            match path {
                Some(p) => object_store::Error::PermissionDenied {
                    path: p.to_string(),
                    source,
                },
                None => object_store::Error::Generic {
                    store: STORE_NAME,
                    source,
                },
            }
        } else {
            bump(&self.n.transient);
            object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(InjectedFault {
                    kind: FaultKind::Transient,
                    op,
                }),
            }
        })
    }

    /// The error of a write that happened (counted).
    fn after_write(&self, op: &'static str) -> object_store::Error {
        bump(&self.n.fail_after_write);
        object_store::Error::Generic {
            store: STORE_NAME,
            source: Box::new(InjectedFault {
                kind: FaultKind::AfterWrite,
                op,
            }),
        }
    }
}

async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A byte stream that ends after `keep` bytes.
fn truncate_stream(
    s: BoxStream<'static, Result<Bytes>>,
    keep: u64,
) -> BoxStream<'static, Result<Bytes>> {
    s.scan(keep, |left, item| {
        let out = match item {
            Ok(_) if *left == 0 => None,
            Ok(b) => {
                let n = (b.len() as u64).min(*left);
                *left -= n;
                Some(Ok(b.slice(..n as usize)))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
    .boxed()
}

/// Duplicates (counted) and shuffles listing entries.
fn mangle<T: Clone>(shared: &Shared, rng: &mut SplitMix, items: Vec<T>, dup: bool) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        if dup && rng.chance(shared.cfg.duplicate_pct) {
            bump(&shared.n.duplicated);
            out.push(it.clone());
        }
        out.push(it);
    }
    if shared.cfg.shuffle_listings {
        for i in (1..out.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            out.swap(i, j);
        }
    }
    out
}

/// An [`ObjectStore`] that injects faults into another (see the module doc).
#[derive(Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl FaultStore {
    /// Wraps `inner`; faults are on (a default `cfg` injects none).
    pub fn new(inner: Arc<dyn ObjectStore>, cfg: FaultConfig) -> FaultStore {
        FaultStore {
            inner,
            shared: Arc::new(Shared {
                enabled: AtomicBool::new(true),
                rng: Mutex::new(SplitMix::new(cfg.seed)),
                cfg,
                n: Counters::default(),
            }),
        }
    }

    /// Turns faults on or off. Off is a pure pass-through (nothing is drawn
    /// or counted), also for multipart uploads already started.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether faults are on.
    pub fn enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.shared.cfg
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        let n = &self.shared.n;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultStats {
            requests: g(&n.requests),
            transient: g(&n.transient),
            permanent: g(&n.permanent),
            truncated: g(&n.truncated),
            duplicated: g(&n.duplicated),
            fail_after_write: g(&n.fail_after_write),
        }
    }

    /// Faults for a listing stream (`list`, `list_with_offset`).
    fn fault_list(
        &self,
        d: Draw,
        op: &'static str,
        prefix: Option<&Path>,
        inner: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let shared = Arc::clone(&self.shared);
        // Decided now (call order), returned when first polled.
        let err = shared.fail(&d, op, prefix);
        stream::once(async move {
            pause(d.delay_ms).await;
            if let Some(e) = err {
                return stream::iter(vec![Err(e)]).boxed();
            }
            let inner = fail_pages(Arc::clone(&shared), d.seed, op, inner);
            if !shared.cfg.shuffle_listings && shared.cfg.duplicate_pct <= 0.0 {
                return inner;
            }
            let items: Vec<Result<ObjectMeta>> = inner.collect().await;
            let mut rng = SplitMix::new(d.seed);
            // Duplicate only objects, never errors.
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                if let Ok(m) = &it {
                    if rng.chance(shared.cfg.duplicate_pct) {
                        bump(&shared.n.duplicated);
                        out.push(Ok(m.clone()));
                    }
                }
                out.push(it);
            }
            if shared.cfg.shuffle_listings {
                for i in (1..out.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    out.swap(i, j);
                }
            }
            stream::iter(out).boxed()
        })
        .flatten()
        .boxed()
    }
}

/// A listing whose pages after the first fail with
/// [`FaultConfig::page_fail_pct`] (the stream ends with the error).
fn fail_pages(
    shared: Arc<Shared>,
    seed: u64,
    op: &'static str,
    inner: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let pct = shared.cfg.page_fail_pct;
    if pct <= 0.0 {
        return inner;
    }
    let rng = SplitMix::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    stream::unfold(
        (inner, rng, 0u64, false),
        move |(mut s, mut rng, seen, done)| {
            let shared = Arc::clone(&shared);
            async move {
                if done {
                    return None;
                }
                let item = s.next().await?;
                let page = crate::counting::LIST_PAGE;
                if item.is_ok() && seen > 0 && seen.is_multiple_of(page) && rng.chance(pct) {
                    bump(&shared.n.transient);
                    let e = object_store::Error::Generic {
                        store: STORE_NAME,
                        source: Box::new(InjectedFault {
                            kind: FaultKind::Transient,
                            op,
                        }),
                    };
                    return Some((Err(e), (s, rng, seen, true)));
                }
                let seen = seen + u64::from(item.is_ok());
                Some((item, (s, rng, seen, false)))
            }
        },
    )
    .boxed()
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("cfg", &self.shared.cfg)
            .field("enabled", &self.enabled())
            .field("stats", &self.stats())
            .finish()
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let Some(d) = self.shared.begin("put_opts", Some(location)).await? else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let r = self.inner.put_opts(location, payload, opts).await?;
        if d.after_write {
            return Err(self.shared.after_write("put_opts"));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.shared
            .begin("put_multipart_opts", Some(location))
            .await?;
        // Wrapped even when faults are off: they may be turned on
        // during the upload.
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            shared: Arc::clone(&self.shared),
            path: location.clone(),
        }) as Box<dyn MultipartUpload>)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(d) = self.shared.begin("get_opts", Some(location)).await? else {
            return self.inner.get_opts(location, options).await;
        };
        let head = options.head;
        let r = self.inner.get_opts(location, options).await?;
        let len = r.range.end.saturating_sub(r.range.start);
        if !d.truncate || head || len == 0 {
            return Ok(r);
        }
        bump(&self.shared.n.truncated);
        let keep = SplitMix::new(d.seed).below(len);
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = r;
        // A file payload becomes a stream (into_stream needs a GetResult).
        let body = GetResult {
            payload,
            meta: meta.clone(),
            range: range.clone(),
            attributes: Attributes::default(),
            extensions: Extensions::default(),
        }
        .into_stream();
        Ok(GetResult {
            payload: GetResultPayload::Stream(truncate_stream(body, keep)),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let Some(d) = self.shared.begin("get_ranges", Some(location)).await? else {
            return self.inner.get_ranges(location, ranges).await;
        };
        let mut out = self.inner.get_ranges(location, ranges).await?;
        let nonempty: Vec<usize> = (0..out.len()).filter(|&i| !out[i].is_empty()).collect();
        if d.truncate && !nonempty.is_empty() {
            bump(&self.shared.n.truncated);
            let mut rng = SplitMix::new(d.seed);
            let i = nonempty[rng.below(nonempty.len() as u64) as usize];
            let keep = rng.below(out[i].len() as u64) as usize;
            out[i].truncate(keep);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if !self.enabled() {
            return self.inner.delete_stream(locations);
        }
        // Each path is a request; a failing one reaches the inner store as
        // an error item (not deleted), which it reports in its place.
        let shared = Arc::clone(&self.shared);
        let faulted = locations
            .then(move |loc| {
                let shared = Arc::clone(&shared);
                async move {
                    let loc = loc?;
                    shared.begin("delete", Some(&loc)).await?;
                    Ok(loc)
                }
            })
            .boxed();
        self.inner.delete_stream(faulted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(d) = self.shared.draw() else {
            return self.inner.list(prefix);
        };
        self.fault_list(d, "list", prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(d) = self.shared.draw() else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let inner = self.inner.list_with_offset(prefix, offset);
        self.fault_list(d, "list_with_offset", prefix, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let Some(d) = self.shared.begin("list_with_delimiter", prefix).await? else {
            return self.inner.list_with_delimiter(prefix).await;
        };
        let r = self.inner.list_with_delimiter(prefix).await?;
        let mut rng = SplitMix::new(d.seed);
        let objects = mangle(&self.shared, &mut rng, r.objects, true);
        let common_prefixes = mangle(&self.shared, &mut rng, r.common_prefixes, false);
        Ok(ListResult {
            common_prefixes,
            objects,
            extensions: r.extensions,
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.shared.begin("copy_opts", Some(to)).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.shared.begin("rename_opts", Some(to)).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload of a [`FaultStore`]: `put_part` and `complete` are
/// requests that may fail; a failed part is not sent (abort the upload).
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    shared: Arc<Shared>,
    path: Path,
}

impl fmt::Debug for FaultUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultUpload")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(d) = self.shared.draw() else {
            return self.inner.put_part(data);
        };
        if let Some(e) = self.shared.fail(&d, "put_part", Some(&self.path)) {
            return Box::pin(async move {
                pause(d.delay_ms).await;
                Err(e)
            });
        }
        let part = self.inner.put_part(data);
        Box::pin(async move {
            pause(d.delay_ms).await;
            part.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let Some(d) = self.shared.begin("complete", Some(&self.path)).await? else {
            return self.inner.complete().await;
        };
        let r = self.inner.complete().await?;
        if d.after_write {
            return Err(self.shared.after_write("complete"));
        }
        Ok(r)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
