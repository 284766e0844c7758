//! Object storage access (I/O): opening a bucket URL, cataloguing a whole
//! root with one listing ([`Bucket::scan`]), listing one database
//! ([`Bucket::list_db`], one paginated listing of its prefix; or
//! [`Bucket::catalog`], level prefix by level prefix, which restores use),
//! discovering databases by directory ([`Bucket::discover`]), and ranged
//! reads of LTX metadata (header, tail, page index) and frames.
//!
//! Everything goes through the [`object_store`] crate. URLs:
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
//! (credentials and endpoints from the environment, as object_store's
//! `from_env` builders read them: `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …),
//! `file:///dir` or a plain path, and `memory://name/prefix` (one in-process
//! store per name, for tests).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ltx_core::header::HEADER_SIZE;
use ltx_core::merge::PlannedFrame;
use ltx_core::{Header, PageIndex, Trailer};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
};

use crate::catalog::{from_listing, parse_key, ListedObject, LtxObject, SNAPSHOT_LEVEL};
use crate::counting::{CountingStore, RequestCounter, RequestCounts};
use crate::error::{Context, Error, Result};
use crate::fleet::{Scan, Shard};

/// How many times [`Bucket::scan`] resumes a root listing that failed
/// part-way (after the store's own retries) before giving up.
pub const SCAN_RESUMES: usize = 3;

/// Requests in flight at once for small reads (headers, tails, indexes).
pub const READ_CONCURRENCY: usize = 32;

/// The object metadata key in which Litestream (0.5.17) keeps an LTX
/// object's time on S3-like stores, RFC 3339 with up to nanoseconds. On
/// `file` replicas it uses the file's modification time instead. Either
/// way it is the header timestamp of the object, and it is what
/// `litestream restore -timestamp` compares, not the header.
pub const LITESTREAM_TIMESTAMP: &str = "litestream-timestamp";

/// The same on Azure Blob Storage, whose metadata names must be C#
/// identifiers (no `-`: Azure refuses `litestream-timestamp` with
/// `InvalidMetadata`); Litestream's `abs` client uses this name.
pub const LITESTREAM_TIMESTAMP_AZURE: &str = "litestreamtimestamp";

/// The metadata name Litestream keeps an object's time under on the store a
/// URL names: [`LITESTREAM_TIMESTAMP_AZURE`] for `az://`, `azure://`,
/// `abfs(s)://` (also behind a `wrapper+` prefix), else
/// [`LITESTREAM_TIMESTAMP`].
///
/// ```
/// use ltx_compactor::store::timestamp_key_for;
/// assert_eq!(timestamp_key_for("az://c/db"), "litestreamtimestamp");
/// assert_eq!(timestamp_key_for("s3://b/db"), "litestream-timestamp");
/// ```
pub fn timestamp_key_for(url: &str) -> &'static str {
    let scheme = url.split("://").next().unwrap_or("");
    let scheme = scheme.rsplit('+').next().unwrap_or(scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "az" | "azure" | "abfs" | "abfss" | "adl" => LITESTREAM_TIMESTAMP_AZURE,
        _ => LITESTREAM_TIMESTAMP,
    }
}

/// A time as Litestream writes it: Go's `RFC3339Nano` (fraction without
/// trailing zeros, none for a whole second), UTC.
///
/// ```
/// use ltx_compactor::store::{litestream_time, parse_litestream_time};
/// assert_eq!(litestream_time(1_796_590_740_660), "2026-12-06T20:59:00.66Z");
/// assert_eq!(litestream_time(1_796_590_740_000), "2026-12-06T20:59:00Z");
/// assert_eq!(parse_litestream_time("2026-12-06T20:59:00.66Z"), Some(1_796_590_740_660));
/// ```
pub fn litestream_time(ms: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses a `litestream-timestamp` value (RFC 3339) to milliseconds.
pub fn parse_litestream_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Litestream's time of an object from its metadata (either name: see
/// [`timestamp_key_for`]), if present and valid.
pub fn litestream_ms_of(attrs: &Attributes) -> Option<i64> {
    [LITESTREAM_TIMESTAMP, LITESTREAM_TIMESTAMP_AZURE]
        .into_iter()
        .find_map(|k| attrs.get(&Attribute::Metadata(k.into())))
        .and_then(|v| parse_litestream_time(v.as_ref()))
}

/// An opened bucket: the store and the prefix the URL points at.
///
/// The store is wrapped in a [`CountingStore`]: every request made through
/// the bucket (or [`Bucket::store`]) is counted, see [`Bucket::requests`].
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The counts of `store`'s requests.
    counter: RequestCounter,
    /// The URL as given (for messages).
    url: String,
    /// The prefix inside the store the URL names (no leading/trailing `/`).
    prefix: String,
    /// For `file://` and plain paths: the directory the store is rooted at.
    local_root: Option<PathBuf>,
    /// The metadata name of Litestream's time on this store.
    timestamp_key: &'static str,
}

fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let mut m = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    m.entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn trim(p: &str) -> String {
    p.trim_matches('/').to_string()
}

impl Bucket {
    /// Opens a URL (see the module docs).
    ///
    /// # Errors
    /// Unknown schemes, bad URLs, missing local directories, store
    /// configuration errors (missing credentials, …).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ltx_compactor::store::Bucket::open("memory://doc/replicas").unwrap();
    /// assert_eq!(b.prefix(), "replicas");
    /// assert!(b.discover().await.unwrap().is_empty());
    /// # });
    /// ```
    pub fn open(url: &str) -> Result<Bucket> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Bucket::local(PathBuf::from(url), url);
        };
        if scheme.len() == 1 {
            // A Windows drive letter, not a scheme.
            return Bucket::local(PathBuf::from(url), url);
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let store: Arc<dyn ObjectStore> = match scheme {
            "file" => return Bucket::local(PathBuf::from(format!("/{path}")), url),
            "memory" => memory_store(host),
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(host)
                    .build()
                    .context_with(|| format!("{url}: configuring S3"))?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(host)
                    .build()
                    .context_with(|| format!("{url}: configuring GCS"))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(host)
                    .build()
                    .context_with(|| format!("{url}: configuring Azure"))?,
            ),
            _ => {
                return Err(Error::usage(format!(
                    "{url}: unknown scheme {scheme:?} (s3, gs, az, file, memory or a path)"
                )))
            }
        };
        Ok(Bucket::counted(store, url, trim(path), None))
    }

    fn counted(
        store: Arc<dyn ObjectStore>,
        url: &str,
        prefix: String,
        local_root: Option<PathBuf>,
    ) -> Bucket {
        let counting = CountingStore::new(store);
        Bucket {
            counter: counting.counter(),
            store: Arc::new(counting),
            url: url.to_string(),
            prefix,
            local_root,
            timestamp_key: timestamp_key_for(url),
        }
    }

    fn local(dir: PathBuf, url: &str) -> Result<Bucket> {
        let meta = std::fs::metadata(&dir)
            .context_with(|| format!("{url}: cannot open directory {}", dir.display()))?;
        if !meta.is_dir() {
            return Err(Error::usage(format!(
                "{url}: {} is not a directory",
                dir.display()
            )));
        }
        let dir = dir
            .canonicalize()
            .context_with(|| format!("{url}: {}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .context_with(|| format!("{url}: {}", dir.display()))?
            .with_automatic_cleanup(true);
        Ok(Bucket::counted(
            Arc::new(store),
            url,
            String::new(),
            Some(dir),
        ))
    }

    /// Wraps an existing store (tests, fault injection).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: &str, prefix: &str) -> Bucket {
        Bucket::counted(store, url, trim(prefix), None)
    }

    /// The same bucket seen through a wrapper around its store (fault
    /// injection): reads, listings and object-store writes go through the
    /// wrapper; a local directory keeps its own writes (temporary file,
    /// fsync, rename) and its kernel-lock lease, which no store wrapper
    /// sees.
    pub fn wrapped(
        &self,
        url: &str,
        wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    ) -> Bucket {
        Bucket::counted(
            wrap(self.store.clone()),
            url,
            self.prefix.clone(),
            self.local_root.clone(),
        )
    }

    /// The store (requests made through it are counted).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The requests made through this bucket and its clones so far, by
    /// kind (see [`crate::counting`]).
    pub fn requests(&self) -> RequestCounts {
        self.counter.snapshot()
    }

    /// The live counter behind [`Bucket::requests`] (for metrics).
    pub fn counter(&self) -> RequestCounter {
        self.counter.clone()
    }

    /// The same bucket with a counter of its own, starting at zero: its
    /// requests are counted there and still in this bucket's counter (one
    /// pass, one restore, among others running on the same bucket).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = ltx_compactor::store::Bucket::open("memory://counted/x").unwrap();
    /// let one = b.with_own_counter();
    /// one.discover().await.unwrap();
    /// assert_eq!((one.requests().list, b.requests().list), (1, 1));
    /// b.discover().await.unwrap();
    /// assert_eq!((one.requests().list, b.requests().list), (1, 2));
    /// # });
    /// ```
    pub fn with_own_counter(&self) -> Bucket {
        Bucket::counted(
            self.store.clone(),
            &self.url,
            self.prefix.clone(),
            self.local_root.clone(),
        )
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The prefix the URL names inside the store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Where database `db` (a prefix inside the store, as [`Bucket::discover`]
    /// returns it) is, for messages: the URL when `db` is the URL itself,
    /// else the store's root URL joined with `db`.
    ///
    /// ```
    /// let b = ltx_compactor::store::Bucket::open("memory://loc/root").unwrap();
    /// assert_eq!(b.location("root"), "memory://loc/root");
    /// assert_eq!(b.location("root/tenant/app.db"), "memory://loc/root/tenant/app.db");
    /// assert_eq!(b.location(""), "memory://loc/root");
    /// ```
    pub fn location(&self, db: &str) -> String {
        let url = self.url.trim_end_matches('/');
        if db.is_empty() || db == self.prefix {
            return url.to_string();
        }
        let root = url
            .strip_suffix(self.prefix.as_str())
            .unwrap_or(url)
            .trim_end_matches('/');
        match db
            .strip_prefix(self.prefix.as_str())
            .filter(|_| !self.prefix.is_empty())
        {
            Some(rest) => format!("{url}/{}", rest.trim_start_matches('/')),
            None => format!("{root}/{db}"),
        }
    }

    /// The local directory for `file://` buckets and plain paths.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// The attributes an LTX object of header timestamp `timestamp_ms` is
    /// written with, so that Litestream sees its time: the
    /// [`LITESTREAM_TIMESTAMP`] metadata on object stores
    /// ([`LITESTREAM_TIMESTAMP_AZURE`] on Azure); none for local
    /// directories, whose objects get their modification time set by
    /// [`Bucket::stamp`] instead (object_store's local store keeps no
    /// metadata).
    pub fn time_attributes(&self, timestamp_ms: i64) -> Attributes {
        let mut a = Attributes::new();
        if self.local_root.is_none() {
            a.insert(
                Attribute::Metadata(self.timestamp_key.into()),
                AttributeValue::from(litestream_time(timestamp_ms)),
            );
        }
        a
    }

    /// After writing `key` to a local directory: sets its modification time
    /// to `timestamp_ms`, as Litestream's `file` replica does (it reads an
    /// object's time from there). Nothing to do on object stores (see
    /// [`Bucket::time_attributes`]).
    ///
    /// # Errors
    /// The file cannot be opened or its time set.
    pub fn stamp(&self, key: &str, timestamp_ms: i64) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let p = root.join(key);
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(timestamp_ms).unwrap_or(0));
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(t))
            .context_with(|| format!("setting the modification time of {}", p.display()))
    }

    /// Finds the databases under the URL's prefix: prefixes holding an
    /// `ltx/<level>/` directory or `%04x` level directories. The prefix itself
    /// counts when it is a database. Depth-first, up to 8 levels of nesting,
    /// sorted.
    ///
    /// # Errors
    /// Listing errors.
    pub async fn discover(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.prefix.clone(), 0usize)];
        while let Some((p, depth)) = stack.pop() {
            let dirs = self.subdirs(&p).await?;
            if is_db_dirs(&dirs) {
                out.push(p);
                continue;
            }
            if depth < 8 {
                for d in dirs {
                    stack.push((join(&p, &d), depth + 1));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Names of the immediate "directories" under `prefix`.
    async fn subdirs(&self, prefix: &str) -> Result<Vec<String>> {
        let path = (!prefix.is_empty()).then(|| Path::from(prefix));
        let r = self
            .store
            .list_with_delimiter(path.as_ref())
            .await
            .context_with(|| format!("{}: listing {prefix:?}", self.url))?;
        let mut v: Vec<String> = r
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Catalogues the whole root (the URL's prefix) with one paginated
    /// listing, no delimiter: `keys / 1000` list requests (pages of 1,000
    /// keys on S3, GCS and Azure) whatever the number of databases or
    /// levels. Keys are taken one at a time as the pages arrive
    /// ([`Scan::add`]): the LTX files of `shard`'s databases (every
    /// database without one) are kept as compact entries, foreign keys and
    /// other shards' files only counted. Both layouts, at any depth.
    ///
    /// A listing that fails part-way (after the store's own retries) is
    /// resumed after the last key seen (`list_with_offset`: start-after on
    /// a whole key, never a TXID string as a prefix) when every key so far
    /// came in key order, as S3, GCS and Azure list; otherwise (a local
    /// directory lists in no order) it starts again. Up to
    /// [`SCAN_RESUMES`] failures in a row.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use object_store::{ObjectStoreExt, PutPayload};
    /// let b = ltx_compactor::store::Bucket::open("memory://scan-doc/root").unwrap();
    /// for k in ["root/t1/ltx/0/0000000000000001-0000000000000001.ltx",
    ///           "root/t2/0000/0000000000000001-0000000000000001.ltx", "root/t2/notes.txt"] {
    ///     b.store().put(&k.into(), PutPayload::from("x")).await.unwrap();
    /// }
    /// let before = b.requests();
    /// let scan = b.scan(None).await.unwrap();
    /// assert_eq!(scan.dbs.keys().collect::<Vec<_>>(), ["root/t1", "root/t2"]);
    /// assert_eq!((scan.keys, scan.foreign_keys), (3, 1));
    /// assert_eq!(b.requests().since(&before).list, 1);
    /// # });
    /// ```
    ///
    /// # Errors
    /// Listing errors (after the resumes).
    pub async fn scan(&self, shard: Option<Shard>) -> Result<Scan> {
        let root = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let mut scan = Scan::new(shard);
        // The last key seen, while every key so far came in key order.
        let mut last: Option<Path> = None;
        let mut in_order = true;
        let mut failures = 0;
        loop {
            let mut stream = match &last {
                Some(k) if in_order => self.store.list_with_offset(root.as_ref(), k),
                _ => {
                    (scan, last, in_order) = (Scan::new(shard), None, true);
                    self.store.list(root.as_ref())
                }
            };
            let mut failed = None;
            let mut got = false;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(m) => {
                        scan.add(
                            m.location.as_ref(),
                            m.size,
                            m.last_modified.timestamp_millis(),
                        );
                        if in_order {
                            in_order = last.as_ref().is_none_or(|l| *l < m.location);
                            last = Some(m.location);
                        }
                        got = true;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let Some(e) = failed else { break };
            // Failures in a row without progress (keys kept for a resume).
            if got && in_order {
                failures = 0;
            }
            failures += 1;
            if failures > SCAN_RESUMES {
                return Err(e).context_with(|| {
                    format!(
                        "{}: listing {:?} (after {} keys)",
                        self.url, self.prefix, scan.keys
                    )
                });
            }
            let how = if in_order && last.is_some() {
                "resuming after the last key"
            } else {
                "listing again"
            };
            tracing::warn!(
                url = self.url,
                keys = scan.keys,
                "listing failed part-way, {how}: {e}"
            );
        }
        scan.finish();
        Ok(scan)
    }

    /// Lists one database's LTX objects with one paginated listing of its
    /// prefix (no delimiter; one request for up to 1,000 keys), in both
    /// layouts; drops foreign keys (leases, records, temporary uploads,
    /// nested databases' files) and duplicates; sorts.
    ///
    /// # Errors
    /// Listing errors.
    pub async fn list_db(&self, db: &str) -> Result<Vec<LtxObject>> {
        let path = (!db.is_empty()).then(|| Path::from(db));
        let mut stream = self.store.list(path.as_ref());
        let mut listed = Vec::new();
        while let Some(m) = stream.next().await {
            let m = m.context_with(|| format!("{}: listing {db:?}", self.url))?;
            let key = m.location.as_ref();
            if parse_key(key).is_some_and(|p| p.db == db) {
                listed.push(ListedObject {
                    key: key.to_string(),
                    size: m.size,
                    last_modified_ms: m.last_modified.timestamp_millis(),
                });
            }
        }
        let (mut cat, _) = from_listing(db, listed);
        cat.dedup_by(|a, b| a.key == b.key);
        Ok(cat)
    }

    /// Lists one database's LTX objects, level prefix by level prefix (never
    /// a seek by TXID string), in both layouts; parses TXIDs from names,
    /// drops duplicates and foreign keys, sorts. Returns the catalog and the
    /// foreign keys seen under the level prefixes.
    ///
    /// # Errors
    /// Listing errors.
    pub async fn catalog(&self, db: &str) -> Result<(Vec<LtxObject>, Vec<String>)> {
        let dirs = self.subdirs(db).await?;
        let mut prefixes = Vec::new();
        if dirs.iter().any(|d| d == "ltx") {
            for d in self.subdirs(&join(db, "ltx")).await? {
                if d.parse::<u8>().is_ok_and(|l| l <= SNAPSHOT_LEVEL) {
                    prefixes.push(join(&join(db, "ltx"), &d));
                }
            }
        }
        for d in &dirs {
            if d.len() == 4 && u8::from_str_radix(d, 16).is_ok_and(|l| l <= SNAPSHOT_LEVEL) {
                prefixes.push(join(db, d));
            }
        }
        let listings: Vec<Vec<ListedObject>> = futures::stream::iter(prefixes)
            .map(|p| async move {
                let path = Path::from(p.as_str());
                self.store
                    .list(Some(&path))
                    .map_ok(|m| ListedObject {
                        key: m.location.to_string(),
                        size: m.size,
                        last_modified_ms: m.last_modified.timestamp_millis(),
                    })
                    .try_collect::<Vec<_>>()
                    .await
                    .context_with(|| format!("{}: listing {p}", self.url))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let (mut cat, foreign) = from_listing(db, listings.into_iter().flatten());
        cat.dedup_by(|a, b| a.key == b.key);
        Ok((cat, foreign))
    }

    /// Reads `range` of `key`, checking the store returned every byte.
    ///
    /// # Errors
    /// Store errors; a short body.
    pub async fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        Ok(self.read_range_attrs(key, range).await?.0)
    }

    /// [`Bucket::read_range`], with the object's Litestream time
    /// ([`LITESTREAM_TIMESTAMP`] metadata) when the store returned it.
    ///
    /// # Errors
    /// Store errors; a short body.
    pub async fn read_range_attrs(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(Bytes, Option<i64>)> {
        let want = range.end - range.start;
        let ctx = || format!("{}: reading {key} bytes {range:?}", self.url);
        let r = self
            .store
            .get_opts(
                &Path::from(key),
                GetOptions {
                    range: Some(GetRange::Bounded(range.clone())),
                    ..Default::default()
                },
            )
            .await
            .context_with(ctx)?;
        let ls = litestream_ms_of(&r.attributes);
        let b = r.bytes().await.context_with(ctx)?;
        if b.len() as u64 != want {
            return Err(Error::invalid(format!(
                "{}: {key}: short read at offset {}: got {} of {want} bytes",
                self.url,
                range.start,
                b.len()
            )));
        }
        Ok((b, ls))
    }

    /// Reads and validates the header of `key`.
    ///
    /// # Errors
    /// Store errors; an invalid header (with the key).
    pub async fn read_header(&self, key: &str) -> Result<Header> {
        let b = self.read_range(key, 0..HEADER_SIZE as u64).await?;
        Header::decode(&b).map_err(|e| Error::format(format!("{}: {key}", self.url), e))
    }

    /// Fills `timestamp_ms` of every catalog object from its header (one
    /// small ranged read each, `READ_CONCURRENCY` at a time), using and
    /// updating `cache` (keys are immutable: never overwritten).
    ///
    /// # Errors
    /// Store errors; invalid headers.
    pub async fn fill_timestamps(
        &self,
        catalog: &mut [LtxObject],
        cache: &mut HashMap<String, i64>,
    ) -> Result<()> {
        let missing: Vec<String> = catalog
            .iter()
            .filter(|o| o.timestamp_ms.is_none() && !cache.contains_key(&o.key))
            .map(|o| o.key.clone())
            .collect();
        let got: Vec<(String, i64)> = futures::stream::iter(missing)
            .map(|k| async move {
                let h = self.read_header(&k).await?;
                Ok::<_, Error>((k, h.timestamp))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        cache.extend(got);
        for o in catalog.iter_mut() {
            if o.timestamp_ms.is_none() {
                o.timestamp_ms = cache.get(&o.key).copied();
            }
        }
        Ok(())
    }

    /// Whether `key` exists (its size if so).
    ///
    /// # Errors
    /// Store errors other than not-found.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&Path::from(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).context_with(|| format!("{}: HEAD {key}", self.url)),
        }
    }

    /// Resolves the URL to exactly one database prefix.
    ///
    /// # Errors
    /// No database, or several (listed).
    pub async fn single_db(&self) -> Result<String> {
        let dbs = self.discover().await?;
        self.single_of(dbs)
    }

    /// [`Bucket::single_db`] over the result of an earlier
    /// [`Bucket::discover`] (no second listing).
    ///
    /// # Errors
    /// No database, or several (listed).
    pub fn single_of(&self, dbs: Vec<String>) -> Result<String> {
        match dbs.len() {
            0 => Err(Error::usage(format!(
                "{}: no LTX database found (expected ltx/<level>/ or 0000/ level directories)",
                self.url
            ))),
            1 => Ok(dbs.into_iter().next().expect("one")),
            n => Err(Error::usage(format!(
                "{}: {n} databases found, name one: {}",
                self.url,
                dbs.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// What [`Bucket::read_meta`] returns.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Object size.
    pub size: u64,
    /// The header.
    pub header: Header,
    /// The trailer.
    pub trailer: Trailer,
    /// The page index.
    pub index: PageIndex,
    /// The object's time as Litestream reads it on object stores (its
    /// [`LITESTREAM_TIMESTAMP`] metadata), when the store returned it.
    pub litestream_ms: Option<i64>,
}

impl ObjectMeta {
    /// As a merge-planner input.
    pub fn merge_input(&self) -> ltx_core::MergeInput {
        ltx_core::MergeInput {
            header: self.header,
            trailer: self.trailer,
            index: self.index.clone(),
        }
    }
}

/// Splits planned frames into runs of consecutive frames of at most
/// `limit` compressed bytes (at least one frame each).
pub fn frame_batches(frames: &[PlannedFrame], limit: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, f) in frames.iter().enumerate() {
        if i > start && bytes + f.entry.size > limit {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += f.entry.size;
    }
    if start < frames.len() {
        out.push(start..frames.len());
    }
    out
}

/// Where `ltx-compactor run --state` keeps what a run knows at the end of
/// each round ([`crate::fleet::write_state`]), so that the next run (a
/// CronJob's, a restarted daemon's) starts where it stopped.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A local file (a path, or a `file://` URL): written to a temporary
    /// file beside it, fsynced, renamed over it, the directory fsynced
    /// ([`crate::atomic::TempFile`]). Reading and writing it are no store
    /// requests.
    Local {
        /// The location as given.
        given: String,
        /// The file.
        path: PathBuf,
    },
    /// An object (`s3://bucket/key`, `gs://…`, `az://…`, `memory://…`):
    /// read with one GET, written with one PUT (overwriting it).
    Object {
        /// The store, opened as [`Bucket::open`] opens a URL.
        bucket: Bucket,
        /// The object's key.
        key: String,
    },
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Local { given, .. } => f.write_str(given),
            StateLocation::Object { bucket, .. } => f.write_str(bucket.url()),
        }
    }
}

impl StateLocation {
    /// Parses a location: a local path or `file://` URL, or an object URL
    /// naming an object (not just a bucket). Nothing is read.
    ///
    /// ```
    /// use ltx_compactor::store::StateLocation;
    /// let s = StateLocation::open("memory://states/shard-0.json").unwrap();
    /// assert_eq!(s.to_string(), "memory://states/shard-0.json");
    /// assert!(matches!(StateLocation::open("file:///var/lib/c/state.json").unwrap(),
    ///                  StateLocation::Local { .. }));
    /// assert!(StateLocation::open("memory://states").is_err());
    /// assert!(StateLocation::open("ftp://x/y").is_err());
    /// ```
    ///
    /// # Errors
    /// An unknown scheme, a URL naming no object, a store that cannot be
    /// configured (see [`Bucket::open`]).
    pub fn open(loc: &str) -> Result<StateLocation> {
        let local = |path: PathBuf| {
            if path.file_name().is_none() {
                return Err(Error::usage(format!("--state {loc}: names no file")));
            }
            Ok(StateLocation::Local {
                given: loc.to_string(),
                path,
            })
        };
        let Some((scheme, rest)) = loc.split_once("://") else {
            return local(PathBuf::from(loc));
        };
        if scheme.len() == 1 {
            return local(PathBuf::from(loc));
        }
        if scheme == "file" {
            let path = rest.split_once('/').map_or("", |(_, p)| p);
            return local(PathBuf::from(format!("/{path}")));
        }
        let bucket = Bucket::open(loc).context_with(|| format!("--state {loc}"))?;
        let key = bucket.prefix().to_string();
        if key.is_empty() {
            return Err(Error::usage(format!(
                "--state {loc}: names a bucket, not an object (e.g. {}/state.json)",
                loc.trim_end_matches('/')
            )));
        }
        Ok(StateLocation::Object { bucket, key })
    }

    /// The store of an object location, its requests also counted in
    /// `counter` (the compactor's: they belong to its round).
    fn store(bucket: &Bucket, counter: &RequestCounter) -> CountingStore {
        CountingStore::with_counter(bucket.store().clone(), counter.clone())
    }

    /// Reads the state: `None` if there is none. One GET for an object,
    /// counted in `counter` too.
    ///
    /// # Errors
    /// Read errors; a state larger than `limit` bytes, refused before its
    /// body is read.
    pub async fn read(&self, counter: &RequestCounter, limit: u64) -> Result<Option<Vec<u8>>> {
        let too_big = |n: u64| {
            Error::invalid(format!(
                "{self}: {n} bytes, more than the {limit} a state may have"
            ))
        };
        match self {
            StateLocation::Local { path, .. } => {
                use std::io::Read;
                let f = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).context_with(|| format!("{self}: cannot open")),
                };
                let len = f
                    .metadata()
                    .context_with(|| format!("{self}: cannot stat"))?
                    .len();
                if len > limit {
                    return Err(too_big(len));
                }
                let mut out = Vec::with_capacity(len as usize);
                f.take(limit + 1)
                    .read_to_end(&mut out)
                    .context_with(|| format!("{self}: cannot read"))?;
                if out.len() as u64 > limit {
                    return Err(too_big(out.len() as u64));
                }
                Ok(Some(out))
            }
            StateLocation::Object { bucket, key } => {
                let store = StateLocation::store(bucket, counter);
                let r = match store.get(&Path::from(key.as_str())).await {
                    Ok(r) => r,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e).context_with(|| format!("{self}: GET")),
                };
                if r.meta.size > limit {
                    return Err(too_big(r.meta.size));
                }
                let b = r
                    .bytes()
                    .await
                    .context_with(|| format!("{self}: reading"))?;
                if b.len() as u64 > limit {
                    return Err(too_big(b.len() as u64));
                }
                Ok(Some(b.to_vec()))
            }
        }
    }

    /// Writes the state, its body written by `fill` (streamed to a local
    /// file; gathered, then one PUT, counted in `counter` too, for an
    /// object). Returns the bytes written.
    ///
    /// # Errors
    /// `fill`'s errors; write errors (a missing directory, a refused PUT).
    /// A local file is left as it was.
    pub async fn write(
        &self,
        counter: &RequestCounter,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<u64> {
        match self {
            StateLocation::Local { path, .. } => {
                use std::io::Write;
                let tmp = crate::atomic::TempFile::beside(path, "state")?;
                let n = {
                    let mut w = CountingWriter {
                        inner: std::io::BufWriter::new(tmp.file()),
                        n: 0,
                    };
                    fill(&mut w)
                        .and_then(|()| w.flush())
                        .context_with(|| format!("{}: writing", tmp.path().display()))?;
                    w.n
                };
                tmp.commit(path)?;
                Ok(n)
            }
            StateLocation::Object { bucket, key } => {
                let mut body = Vec::new();
                fill(&mut body).context_with(|| format!("{self}: serialising"))?;
                let n = body.len() as u64;
                StateLocation::store(bucket, counter)
                    .put(&Path::from(key.as_str()), body.into())
                    .await
                    .context_with(|| format!("{self}: PUT"))?;
                Ok(n)
            }
        }
    }
}

/// A writer that counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `a/b` joined without doubled or leading slashes.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn is_db_dirs(dirs: &[String]) -> bool {
    dirs.iter().any(|d| {
        d == "ltx" || (d.len() == 4 && u8::from_str_radix(d, 16).is_ok_and(|l| l <= SNAPSHOT_LEVEL))
    })
}

/// Whether a key is an LTX object of some database (not foreign).
pub fn is_ltx_key(key: &str) -> bool {
    parse_key(key).is_some()
}

/// Milliseconds since the epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
