//! A request-counting [`ObjectStore`] wrapper: how many requests of each
//! kind a restore or a compaction pass sent (on S3 every request is a round
//! trip and a charge).
//!
//! [`CountingStore`] wraps any store (a `faults::FaultStore`
//! included, in either order) and passes every call through unchanged,
//! counting it by kind in a shared [`RequestCounter`]; [`RequestCounter::snapshot`]
//! returns the counts so far as [`RequestCounts`], whose field names are the
//! stable names `ltx restore --json` and `ltx-compactor run --json` report.
//! [`crate::store::Bucket`] wraps its store in one, so everything a bucket
//! does is counted.
//!
//! What one request is, per kind:
//!
//! - `list`: one per page of a listing (`list`, `list_with_offset`,
//!   `list_with_delimiter`): a call returning up to 1,000 entries is one
//!   request, each further 1,000 entries (objects and common prefixes) one
//!   more, as S3, GCS and Azure page them;
//! - `get`: a GET of a whole object;
//! - `get_range`: a ranged GET; a `get_ranges` call counts the ranges left
//!   after merging those less than 1 MiB apart, as object_store's default
//!   implementation sends them (stores that read ranges natively, the local
//!   file system and memory, do fewer);
//! - `head`: a HEAD (object_store's `head`, a `get_opts` with `head` set);
//! - `put`: a PUT of a whole object, and the start and completion of a
//!   multipart upload;
//! - `multipart_part`: one uploaded part;
//! - `copy`: a server-side copy (a rename counts a copy and a delete);
//! - `delete`: one object deleted (each path of a `delete_stream`; S3's
//!   bulk deletes would send up to 1,000 per request), or an aborted
//!   multipart upload.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use ltx_compactor::counting::CountingStore;
//! use object_store::{memory::InMemory, path::Path, ObjectStoreExt};
//! let store = CountingStore::new(Arc::new(InMemory::new()));
//! store.put(&Path::from("a"), "hello".into()).await.unwrap();
//! store.get(&Path::from("a")).await.unwrap();
//! store.get_range(&Path::from("a"), 1..3).await.unwrap();
//! let n = store.counter().snapshot();
//! assert_eq!((n.put, n.get, n.get_range, n.total()), (1, 1, 1, 3));
//! # }
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use serde::{Deserialize, Serialize};

/// Entries per listing page (S3's, GCS's and Azure's default maximum).
pub const LIST_PAGE: u64 = 1000;

/// Ranges closer than this are fetched by one request in object_store's
/// default `get_ranges` (`OBJECT_STORE_COALESCE_DEFAULT`).
const COALESCE: u64 = object_store::OBJECT_STORE_COALESCE_DEFAULT;

/// Requests by kind (see the module docs for what each counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Listing pages.
    pub list: u64,
    /// Whole-object GETs.
    pub get: u64,
    /// Ranged GETs.
    pub get_range: u64,
    /// HEADs.
    pub head: u64,
    /// Single PUTs, multipart starts and completions.
    pub put: u64,
    /// Multipart parts.
    pub multipart_part: u64,
    /// Server-side copies.
    pub copy: u64,
    /// Deletions (objects) and aborted multipart uploads.
    pub delete: u64,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.list
            + self.get
            + self.get_range
            + self.head
            + self.put
            + self.multipart_part
            + self.copy
            + self.delete
    }

    /// GETs of any kind (whole and ranged).
    pub fn reads(&self) -> u64 {
        self.get + self.get_range
    }

    /// The requests made since `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            list: self.list.saturating_sub(earlier.list),
            get: self.get.saturating_sub(earlier.get),
            get_range: self.get_range.saturating_sub(earlier.get_range),
            head: self.head.saturating_sub(earlier.head),
            put: self.put.saturating_sub(earlier.put),
            multipart_part: self.multipart_part.saturating_sub(earlier.multipart_part),
            copy: self.copy.saturating_sub(earlier.copy),
            delete: self.delete.saturating_sub(earlier.delete),
        }
    }
}

impl fmt::Display for RequestCounts {
    /// `N (list a, get b, …)`, kinds with a zero count left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.total())?;
        let kinds = [
            ("list", self.list),
            ("get", self.get),
            ("get_range", self.get_range),
            ("head", self.head),
            ("put", self.put),
            ("multipart_part", self.multipart_part),
            ("copy", self.copy),
            ("delete", self.delete),
        ];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|k| k.1 > 0)
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    get_range: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    multipart_part: AtomicU64,
    copy: AtomicU64,
    delete: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A shared handle on the counts of a [`CountingStore`] (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counters>);

impl RequestCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let n = &self.0;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            list: g(&n.list),
            get: g(&n.get),
            get_range: g(&n.get_range),
            head: g(&n.head),
            put: g(&n.put),
            multipart_part: g(&n.multipart_part),
            copy: g(&n.copy),
            delete: g(&n.delete),
        }
    }
}

/// An [`ObjectStore`] that counts the requests made through it (see the
/// module docs) and otherwise passes everything through.
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    n: RequestCounter,
}

impl CountingStore {
    /// Wraps `inner` with a new counter.
    pub fn new(inner: Arc<dyn ObjectStore>) -> CountingStore {
        CountingStore {
            inner,
            n: RequestCounter::default(),
        }
    }

    /// Wraps `inner`, counting into an existing counter (another store's:
    /// requests through either are counted together).
    pub fn with_counter(inner: Arc<dyn ObjectStore>, counter: RequestCounter) -> CountingStore {
        CountingStore { inner, n: counter }
    }

    /// The counter (shared: clones see later requests too).
    pub fn counter(&self) -> RequestCounter {
        self.n.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Counts a listing stream's pages: one when it is created, one more
    /// per further [`LIST_PAGE`] entries.
    fn count_list(
        &self,
        s: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let n = self.n.clone();
        bump(&n.0.list, 1);
        let mut seen = 0u64;
        s.inspect(move |item| {
            if item.is_ok() {
                seen += 1;
                if seen > 1 && (seen - 1).is_multiple_of(LIST_PAGE) {
                    bump(&n.0.list, 1);
                }
            }
        })
        .boxed()
    }
}

/// Pages of a listing of `entries` entries (at least one).
fn pages(entries: usize) -> u64 {
    (entries as u64).div_ceil(LIST_PAGE).max(1)
}

/// How many requests object_store's default `get_ranges` sends for
/// `ranges`: those left after merging ranges at most [`COALESCE`] apart.
fn coalesced(ranges: &[Range<u64>]) -> u64 {
    let mut v: Vec<&Range<u64>> = ranges.iter().collect();
    v.sort_unstable_by_key(|r| r.start);
    let mut n = 0u64;
    let mut end: Option<u64> = None;
    for r in v {
        match end {
            Some(e) if r.start <= e.saturating_add(COALESCE) => end = Some(e.max(r.end)),
            _ => {
                n += 1;
                end = Some(r.end);
            }
        }
    }
    n
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

impl fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("inner", &self.inner)
            .field("requests", &self.n.snapshot())
            .finish()
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        bump(&self.n.0.put, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        bump(&self.n.0.put, 1);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            n: self.n.clone(),
        }) as Box<dyn MultipartUpload>)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let c = if options.head {
            &self.n.0.head
        } else if options.range.is_some() {
            &self.n.0.get_range
        } else {
            &self.n.0.get
        };
        bump(c, 1);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        bump(&self.n.0.get_range, coalesced(ranges));
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let n = self.n.clone();
        let counted = locations
            .inspect(move |l| {
                if l.is_ok() {
                    bump(&n.0.delete, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count_list(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count_list(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await;
        let n = match &r {
            Ok(r) => pages(r.objects.len() + r.common_prefixes.len()),
            Err(_) => 1,
        };
        bump(&self.n.0.list, n);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        bump(&self.n.0.copy, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        bump(&self.n.0.copy, 1);
        bump(&self.n.0.delete, 1);
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload of a [`CountingStore`]: parts, the completion and an
/// abort are counted.
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    n: RequestCounter,
}

impl fmt::Debug for CountingUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingUpload")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        bump(&self.n.0.multipart_part, 1);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        bump(&self.n.0.put, 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        bump(&self.n.0.delete, 1);
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, WriteMultipart};

    #[test]
    fn coalescing_like_object_store() {
        assert_eq!(coalesced(&[]), 0);
        assert_eq!(coalesced(&[0..10, 20..30]), 1);
        assert_eq!(coalesced(&[0..10, (10 + (2 << 20))..(11 + (2 << 20))]), 2);
        assert_eq!(coalesced(&[(5 << 20)..(6 << 20), 0..10]), 2);
        assert_eq!(pages(0), 1);
        assert_eq!(pages(1000), 1);
        assert_eq!(pages(1001), 2);
    }

    #[tokio::test]
    async fn every_kind_is_counted() {
        let s = CountingStore::new(Arc::new(InMemory::new()));
        let n = s.counter();
        for i in 0..1001 {
            s.put(&Path::from(format!("d/{i:04}")), "x".into())
                .await
                .unwrap();
        }
        let listed: Vec<_> = s.list(Some(&Path::from("d"))).collect().await;
        assert_eq!(listed.len(), 1001);
        s.list_with_delimiter(None).await.unwrap();
        s.head(&Path::from("d/0001")).await.unwrap();
        s.get(&Path::from("d/0001")).await.unwrap();
        s.get_ranges(&Path::from("d/0002"), &[0..1, 0..1])
            .await
            .unwrap();
        s.copy(&Path::from("d/0001"), &Path::from("e/1"))
            .await
            .unwrap();
        s.rename(&Path::from("e/1"), &Path::from("e/2"))
            .await
            .unwrap();
        s.delete(&Path::from("e/2")).await.unwrap();
        let up = s.put_multipart(&Path::from("m")).await.unwrap();
        let mut w = WriteMultipart::new_with_chunk_size(up, 5);
        w.write(b"0123456789ab");
        w.finish().await.unwrap();
        let c = n.snapshot();
        assert_eq!(
            c,
            RequestCounts {
                list: 3,
                get: 1,
                get_range: 1,
                head: 1,
                put: 1001 + 2,
                multipart_part: 3,
                copy: 2,
                delete: 2,
            }
        );
        let before = c;
        s.get(&Path::from("m")).await.unwrap();
        assert_eq!(n.snapshot().since(&before).total(), 1);
        assert_eq!(
            RequestCounts {
                get: 2,
                list: 1,
                ..Default::default()
            }
            .to_string(),
            "3 (list 1, get 2)"
        );
    }
}
