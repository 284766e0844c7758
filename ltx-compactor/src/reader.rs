//! Reading LTX objects from a bucket by size (I/O), for restore and
//! compaction alike: as few requests as the bytes allow.
//!
//! Opening an object ([`open`], [`open_all`]) yields what a merge plan
//! needs (header, trailer, page index: an [`ObjectMeta`]) and, where they
//! came with it, bytes kept for later ([`Opened::held`]):
//!
//! - **small objects** (up to [`ReadOptions::whole_max`], 1 MiB by default):
//!   one GET of the whole object. Header, index and every frame come from
//!   that body, which is kept while the [`HoldBudget`] allows, so the frames
//!   cost no further request; past the budget the body is dropped after
//!   parsing and its winning frames are read again later with one ranged GET
//!   per run of frames.
//! - **large objects**: two ranged GETs sent together, the header (first 100
//!   bytes) and a suffix holding the tail, the page index and usually some
//!   last frames (`64 KiB + size/256`, at most 8 MiB: an index entry is a few
//!   bytes per frame of a few KiB). A third request reads the start of an
//!   index longer than the guess. Frame bytes in the suffix are kept (within
//!   the budget). In a local directory a GET opens the file and reads
//!   nothing until asked: one GET, then every read of the object (header,
//!   suffix, spans) through that handle ([`Opened::local`]), so each file
//!   is opened once.
//!
//! Frames not held are read as [`Span`]s ([`spans`]): the winning frames of
//! one object sorted by offset, neighbours less than [`ReadOptions::span_gap`]
//! apart read through (the bytes in between cost less than a request),
//! split at [`ReadOptions::span_max`] so that a large object is read as a
//! few large requests in parallel. [`SpanReader`] streams a span's body and
//! decodes batches of complete frames as they arrive, so a span of hundreds
//! of MiB needs a couple of batches of memory (restore); [`frames_of`]
//! reads a batch of planned frames, held ones from memory and the others
//! one ranged GET per span (compaction, which writes its output in page
//! order).
//!
//! No header is ever read on its own just for its timestamp here: the
//! header comes with the body or with the index it is needed for.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use ltx_core::file::{parse_index, parse_tail, MIN_FILE_SIZE, TAIL_SIZE};
use ltx_core::header::HEADER_SIZE;
use ltx_core::index::IndexEntry;
use ltx_core::Header;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, GetResultPayload};

use crate::error::{Context, Error, Result};
use crate::store::{litestream_ms_of, Bucket, ObjectMeta};

/// How objects are read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Objects up to this size are read with one GET of the whole object.
    pub whole_max: u64,
    /// Bytes of bodies and suffixes kept in memory for their frames, in all.
    pub hold_budget: u64,
    /// Objects opened at once (requests in flight while opening).
    pub concurrency: usize,
    /// Winning frames less than this apart are read by one request.
    pub span_gap: u64,
    /// A span longer than this is split (so large objects are read by
    /// several requests in parallel).
    pub span_max: u64,
    /// The suffix read of a large object: this many bytes plus 1/256 of
    /// the object (at most 8 MiB); see [`suffix_guess`]. Smaller values
    /// read fewer bytes when only the index is wanted (`ltx sql`), at the
    /// risk of a third request for a long index.
    pub suffix_min: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            whole_max: 1 << 20,
            hold_budget: 32 << 20,
            concurrency: crate::store::READ_CONCURRENCY,
            span_gap: 256 << 10,
            span_max: 64 << 20,
            suffix_min: 64 << 10,
        }
    }
}

/// A shared allowance of bytes kept in memory ([`ReadOptions::hold_budget`]).
#[derive(Debug)]
pub struct HoldBudget {
    limit: u64,
    used: AtomicU64,
}

impl HoldBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> HoldBudget {
        HoldBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes if they fit.
    pub fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Bytes taken so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes of an object kept in memory: `bytes` are the object's bytes from
/// offset `at`.
#[derive(Debug, Clone)]
pub struct Held {
    /// Offset of `bytes[0]` in the object.
    pub at: u64,
    /// The bytes.
    pub bytes: Bytes,
}

impl Held {
    /// The bytes of `range` of the object, if all are held.
    pub fn get(&self, range: Range<u64>) -> Option<Bytes> {
        let end = self.at + self.bytes.len() as u64;
        (range.start >= self.at && range.end <= end).then(|| {
            self.bytes
                .slice((range.start - self.at) as usize..(range.end - self.at) as usize)
        })
    }
}

/// An opened object: its metadata and the bytes kept from opening it.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Header, trailer, index.
    pub meta: ObjectMeta,
    /// Bytes kept for their frames (the whole body of a small object, the
    /// frames in a large object's suffix), when the budget allowed.
    pub held: Option<Held>,
    /// Bytes read to open it.
    pub bytes_read: u64,
    /// Whether it was read with one whole-object GET.
    pub whole: bool,
    /// A large object of a local directory: the file, opened once by one
    /// GET (object_store's local store opens the file and reads nothing
    /// until asked); every later read of it goes through this handle.
    pub local: Option<LocalFile>,
}

/// An open file of a local directory bucket, read with `pread` on blocking
/// threads (shared by concurrent readers).
#[derive(Debug, Clone)]
pub struct LocalFile {
    file: Arc<std::fs::File>,
    path: std::path::PathBuf,
}

impl LocalFile {
    /// Reads `range`, all of it.
    ///
    /// # Errors
    /// I/O errors; a file shorter than the range.
    pub async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        let f = self.clone();
        let want = (range.end - range.start) as usize;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let got = read_full_at(&f.file, &mut buf, range.start)
                .context_with(|| format!("reading {}", f.path.display()))?;
            if got != want {
                return Err(Error::invalid(format!(
                    "{}: short read at offset {}: got {got} of {want} bytes",
                    f.path.display(),
                    range.start
                )));
            }
            Ok(Bytes::from(buf))
        })
        .await
        .context("reading a local file")?
    }
}

/// For a local directory bucket: one GET of `key`, which opens the file
/// (`None` for other stores, or when the store did not hand out a file).
async fn open_local(bucket: &Bucket, key: &str) -> Result<Option<LocalFile>> {
    if bucket.local_root().is_none() {
        return Ok(None);
    }
    let r = bucket
        .store()
        .get_opts(&Path::from(key), GetOptions::default())
        .await
        .context_with(|| format!("{}: opening {key}", bucket.url()))?;
    Ok(match r.payload {
        GetResultPayload::File(file, path) => Some(LocalFile {
            file: Arc::new(file),
            path,
        }),
        GetResultPayload::Stream(_) => None,
    })
}

impl Opened {
    /// The bytes of frame `e` if they are held.
    pub fn held_frame(&self, e: &IndexEntry) -> Option<Bytes> {
        self.held.as_ref()?.get(e.offset..e.offset + e.size)
    }
}

/// Litestream's time of a GET's object from its metadata, if any.
fn litestream_ms(r: &GetResult) -> Option<i64> {
    litestream_ms_of(&r.attributes)
}

/// Bytes of a suffix read that should hold the tail and index of an object
/// of `size` bytes (with the default [`ReadOptions::suffix_min`]).
pub fn suffix_guess(size: u64) -> u64 {
    suffix_guess_with(size, 64 << 10)
}

/// [`suffix_guess`] with `min` for [`ReadOptions::suffix_min`].
pub fn suffix_guess_with(size: u64, min: u64) -> u64 {
    min.saturating_add(size / 256).min(8 << 20).min(size)
}

/// GETs `key` (the whole object when `range` is `None`), checking that
/// `want` bytes came back. Returns the body and the Litestream time.
async fn get(
    bucket: &Bucket,
    key: &str,
    range: Option<Range<u64>>,
    want: u64,
) -> Result<(Bytes, Option<i64>)> {
    let ctx = || match &range {
        Some(r) => format!("{}: reading {key} bytes {r:?}", bucket.url()),
        None => format!("{}: reading {key}", bucket.url()),
    };
    let r = bucket
        .store()
        .get_opts(
            &Path::from(key),
            GetOptions {
                range: range.clone().map(GetRange::Bounded),
                ..Default::default()
            },
        )
        .await
        .context_with(ctx)?;
    let ls = litestream_ms(&r);
    let b = r.bytes().await.context_with(ctx)?;
    if b.len() as u64 != want {
        return Err(Error::invalid(format!(
            "{}: {key}: short read at offset {}: got {} of {want} bytes",
            bucket.url(),
            range.map_or(0, |r| r.start),
            b.len()
        )));
    }
    Ok((b, ls))
}

/// Opens `key` (of `size` bytes, from the listing) as the module docs say,
/// keeping bytes within `budget`.
///
/// # Errors
/// Store errors; a short body; format errors naming the key and offset.
pub async fn open(
    bucket: &Bucket,
    key: &str,
    size: u64,
    budget: &HoldBudget,
    opts: &ReadOptions,
) -> Result<Opened> {
    let fmt_err = |e: ltx_core::Error| Error::format(format!("{}: {key}", bucket.url()), e);
    if size < MIN_FILE_SIZE {
        return Err(Error::invalid(format!(
            "{}: {key}: {size} bytes is too short for an LTX file",
            bucket.url()
        )));
    }
    if size <= opts.whole_max {
        let (body, ls) = get(bucket, key, None, size).await?;
        let header = Header::decode(&body[..HEADER_SIZE]).map_err(fmt_err)?;
        let tail_bytes: &[u8; TAIL_SIZE] = body[body.len() - TAIL_SIZE..]
            .try_into()
            .expect("tail size");
        let tail = parse_tail(tail_bytes, size).map_err(fmt_err)?;
        let r = tail.index_range.clone();
        let index = parse_index(&header, &body[r.start as usize..r.end as usize], r.start)
            .map_err(fmt_err)?;
        let held = budget.try_take(size).then(|| Held { at: 0, bytes: body });
        return Ok(Opened {
            meta: ObjectMeta {
                key: key.to_string(),
                size,
                header,
                trailer: tail.trailer,
                index,
                litestream_ms: ls,
            },
            held,
            bytes_read: size,
            whole: true,
            local: None,
        });
    }
    let guess = suffix_guess_with(size, opts.suffix_min).max(TAIL_SIZE as u64);
    let at = size - guess;
    let local = open_local(bucket, key).await?;
    let read = |range: Range<u64>| {
        let local = local.clone();
        async move {
            match local {
                Some(f) => Ok((f.read(range).await?, None)),
                None => get(bucket, key, Some(range.clone()), range.end - range.start).await,
            }
        }
    };
    let ((head, ls), (suffix, _)) =
        futures::try_join!(read(0..HEADER_SIZE as u64), read(at..size))?;
    let mut bytes_read = HEADER_SIZE as u64 + guess;
    let header = Header::decode(&head).map_err(fmt_err)?;
    let tail_bytes: &[u8; TAIL_SIZE] = suffix[suffix.len() - TAIL_SIZE..]
        .try_into()
        .expect("tail size");
    let tail = parse_tail(tail_bytes, size).map_err(fmt_err)?;
    let r = tail.index_range.clone();
    let (index, held) = if r.start >= at {
        let s = (r.start - at) as usize..(r.end - at) as usize;
        let index = parse_index(&header, &suffix[s], r.start).map_err(fmt_err)?;
        // The frames before the index, if any, are worth keeping.
        let frames = suffix.slice(..(r.start - at) as usize);
        let held = (!frames.is_empty() && budget.try_take(frames.len() as u64))
            .then_some(Held { at, bytes: frames });
        (index, held)
    } else {
        // An index longer than the guess: read its start.
        let (start, _) = read(r.start..at).await?;
        bytes_read += at - r.start;
        let mut buf = BytesMut::with_capacity((r.end - r.start) as usize);
        buf.extend_from_slice(&start);
        buf.extend_from_slice(&suffix[..(r.end - at) as usize]);
        let index = parse_index(&header, &buf, r.start).map_err(fmt_err)?;
        (index, None)
    };
    Ok(Opened {
        meta: ObjectMeta {
            key: key.to_string(),
            size,
            header,
            trailer: tail.trailer,
            index,
            litestream_ms: ls,
        },
        held,
        bytes_read,
        whole: false,
        local,
    })
}

impl Bucket {
    /// Reads what a merge or restore plan needs from one object of `size`
    /// bytes: header, tail and page index (one GET of the whole object up
    /// to 1 MiB, else two ranged GETs; see [`open`]). Nothing is kept.
    /// (Defined here, beside the reader it runs, so that the store does
    /// not depend on the reader.)
    ///
    /// # Errors
    /// Store errors; format errors naming the key and byte offset.
    pub async fn read_meta(&self, key: &str, size: u64) -> Result<ObjectMeta> {
        let none = HoldBudget::new(0);
        Ok(open(self, key, size, &none, &ReadOptions::default())
            .await?
            .meta)
    }
}

/// Opens `files` (key, size), [`ReadOptions::concurrency`] at a time, in
/// order, sharing one budget.
///
/// # Errors
/// The first error of [`open`].
pub async fn open_all(
    bucket: &Bucket,
    files: Vec<(String, u64)>,
    opts: &ReadOptions,
) -> Result<Vec<Opened>> {
    let budget = Arc::new(HoldBudget::new(opts.hold_budget));
    futures::stream::iter(files)
        .map(|(key, size)| {
            // Owned captures: callers spawn these futures (rust-lang/rust#102211).
            let (bucket, budget, opts) = (bucket.clone(), budget.clone(), opts.clone());
            async move { open(&bucket, &key, size, &budget, &opts).await }
        })
        .buffered(opts.concurrency.max(1))
        .try_collect()
        .await
}

/// A byte range of one object read by one request, and the frames in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The range: from the first frame's start to the last frame's end.
    pub range: Range<u64>,
    /// Positions (in the caller's list) of the frames in it, by offset.
    pub frames: Vec<usize>,
}

/// Groups frames of one object (`(position, entry)`, any order) into spans:
/// sorted by offset, a frame less than `gap` bytes after the previous one
/// joins its span unless the span would pass `max` bytes.
///
/// ```
/// use ltx_compactor::reader::spans;
/// use ltx_core::index::IndexEntry;
/// let e = |offset, size| IndexEntry { pgno: 1, offset, size };
/// let s = spans(vec![(0, e(100, 10)), (1, e(110, 10)), (2, e(5000, 10))], 1000, 1 << 20);
/// assert_eq!(s.len(), 2);
/// assert_eq!((s[0].range.clone(), s[0].frames.clone()), (100..120, vec![0, 1]));
/// ```
pub fn spans(mut frames: Vec<(usize, IndexEntry)>, gap: u64, max: u64) -> Vec<Span> {
    frames.sort_by_key(|f| f.1.offset);
    let mut out: Vec<Span> = Vec::new();
    for (i, e) in frames {
        let end = e.offset + e.size;
        match out.last_mut() {
            Some(s) if e.offset <= s.range.end + gap && end - s.range.start <= max => {
                s.range.end = s.range.end.max(end);
                s.frames.push(i);
            }
            _ => out.push(Span {
                range: e.offset..end,
                frames: vec![i],
            }),
        }
    }
    out
}

/// The bytes of `frames` (planned over `inputs`), in order: frames held in
/// memory cost nothing; the others of each input are grouped into spans
/// (`gap`, `max` as in [`spans`]) and read with one ranged GET each,
/// `concurrency` at a time. Returns the frames and the bytes requested.
///
/// # Errors
/// Store errors; a short body.
pub async fn frames_of(
    bucket: &Bucket,
    inputs: &[Opened],
    frames: &[ltx_core::merge::PlannedFrame],
    gap: u64,
    max: u64,
    concurrency: usize,
) -> Result<(Vec<Bytes>, u64)> {
    let mut out: Vec<Bytes> = vec![Bytes::new(); frames.len()];
    let mut missing: Vec<Vec<(usize, IndexEntry)>> = vec![Vec::new(); inputs.len()];
    for (i, f) in frames.iter().enumerate() {
        match inputs[f.input].held_frame(&f.entry) {
            Some(b) => out[i] = b,
            None => missing[f.input].push((i, f.entry)),
        }
    }
    let jobs: Vec<(usize, Span)> = missing
        .into_iter()
        .enumerate()
        .flat_map(|(input, m)| spans(m, gap, max).into_iter().map(move |s| (input, s)))
        .collect();
    let got: Vec<(Span, Bytes)> = futures::stream::iter(jobs)
        .map(|(input, span)| async move {
            let r = span.range.clone();
            let b = match &inputs[input].local {
                Some(f) => f.read(r).await?,
                None => {
                    let key = &inputs[input].meta.key;
                    get(bucket, key, Some(r.clone()), r.end - r.start).await?.0
                }
            };
            Ok::<_, Error>((span, b))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut read = 0u64;
    for (span, b) in got {
        read += b.len() as u64;
        for i in span.frames {
            let e = frames[i].entry;
            let s = (e.offset - span.range.start) as usize;
            out[i] = b.slice(s..s + e.size as usize);
        }
    }
    Ok((out, read))
}

/// A batch of complete frames from a [`SpanReader`]: `bytes` are the
/// object's bytes from offset `at`, covering the frames `frames` (positions
/// in the span's list) entirely.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// Offset of `bytes[0]` in the object.
    pub at: u64,
    /// The bytes.
    pub bytes: &'a [u8],
    /// Range of the span's `frames` list that this batch completes.
    pub frames: Range<usize>,
}

impl<'a> Batch<'a> {
    /// The bytes of `e` (a frame of the batch).
    pub fn frame(&self, e: &IndexEntry) -> &'a [u8] {
        let s = (e.offset - self.at) as usize;
        &self.bytes[s..s + e.size as usize]
    }
}

/// Bytes read from a local file per blocking read.
const FILE_READ: usize = 1 << 20;

/// Streams one span of one object: a single ranged GET whose body is cut
/// into [`Batch`]es of complete frames of at least `batch_bytes` (the last
/// may be smaller) as it arrives, each handed to a decoding function on a
/// blocking thread while the next one arrives.
///
/// Memory: from a stream (object stores), the batch being decoded and the
/// one being filled; from a local file (read on a blocking thread, 1 MiB
/// per read, decoded in place), one buffer of 1 MiB and a frame.
pub struct SpanReader {
    key: String,
    url: String,
    /// (offset, end) of the span's frames, by offset.
    frames: Vec<(u64, u64)>,
    range: Range<u64>,
    batch_bytes: usize,
    local: Option<LocalFile>,
}

impl SpanReader {
    /// A reader of `span` of `key`; `entries` gives the span's frames in
    /// the order of `span.frames`. Nothing is requested before
    /// [`SpanReader::read_with`].
    pub fn new(
        bucket: &Bucket,
        key: &str,
        span: &Span,
        entries: impl IntoIterator<Item = IndexEntry>,
        batch_bytes: u64,
    ) -> SpanReader {
        SpanReader {
            key: key.to_string(),
            url: bucket.url().to_string(),
            frames: entries
                .into_iter()
                .map(|e| (e.offset, e.offset + e.size))
                .collect(),
            range: span.range.clone(),
            batch_bytes: usize::try_from(batch_bytes.max(1)).unwrap_or(usize::MAX),
            local: None,
        }
    }

    /// Reads through this open file instead of a request (see
    /// [`Opened::local`]).
    pub fn with_local(mut self, local: Option<LocalFile>) -> SpanReader {
        self.local = local;
        self
    }

    fn short(&self, received: u64) -> Error {
        Error::invalid(format!(
            "{}: {}: short read at offset {}: got {} of {} bytes",
            self.url,
            self.key,
            self.range.start,
            received,
            self.range.end - self.range.start
        ))
    }

    /// The frames complete in `buf` (the object's bytes from `at`) from
    /// frame `next` on: the end of the last (exclusive index, end offset).
    fn complete(&self, next: usize, at: u64, len: usize) -> (usize, u64) {
        let have = at + len as u64;
        let mut last = next;
        while last < self.frames.len() && self.frames[last].1 <= have {
            last += 1;
        }
        let end = if last > next {
            self.frames[last - 1].1
        } else {
            at
        };
        (last, end)
    }

    /// Reads the span and calls `decode` with every batch, in order, on
    /// blocking threads; returns the XOR of what `decode` returned and the
    /// bytes received.
    ///
    /// # Errors
    /// Store errors; a body that ends before the span does; the first
    /// error of `decode`.
    pub async fn read_with<F>(self, bucket: &Bucket, decode: F) -> Result<(u64, u64)>
    where
        F: FnMut(Batch<'_>) -> Result<u64> + Send + 'static,
    {
        if self.frames.is_empty() {
            return Ok((0, 0));
        }
        if let Some(f) = self.local.clone() {
            return tokio::task::spawn_blocking(move || self.run_file(&f.file, &f.path, decode))
                .await
                .context("reading a local file")?;
        }
        let ctx = format!("{}: reading {} bytes {:?}", self.url, self.key, self.range);
        let r = bucket
            .store()
            .get_opts(
                &Path::from(self.key.as_str()),
                GetOptions {
                    range: Some(GetRange::Bounded(self.range.clone())),
                    ..Default::default()
                },
            )
            .await
            .context_with(|| ctx.clone())?;
        match r.payload {
            GetResultPayload::File(file, path) => {
                tokio::task::spawn_blocking(move || self.run_file(&file, &path, decode))
                    .await
                    .context("reading a local file")?
            }
            GetResultPayload::Stream(s) => self.run_stream(s, decode, &ctx).await,
        }
    }

    /// A local file: read and decode on this (blocking) thread, in place.
    fn run_file<F>(
        &self,
        file: &std::fs::File,
        path: &std::path::Path,
        mut decode: F,
    ) -> Result<(u64, u64)>
    where
        F: FnMut(Batch<'_>) -> Result<u64>,
    {
        let mut buf: Vec<u8> = Vec::with_capacity(FILE_READ + (64 << 10));
        let (mut at, mut next, mut x) = (self.range.start, 0usize, 0u64);
        let mut pos = self.range.start;
        while next < self.frames.len() {
            let n = ((self.range.end - pos) as usize).min(FILE_READ);
            let len = buf.len();
            buf.resize(len + n, 0);
            let got = read_full_at(file, &mut buf[len..], pos)
                .context_with(|| format!("{}: reading {}", self.url, path.display()))?;
            buf.truncate(len + got);
            pos += got as u64;
            let (last, end) = self.complete(next, at, buf.len());
            if last > next {
                let cut = (end - at) as usize;
                x ^= decode(Batch {
                    at,
                    bytes: &buf[..cut],
                    frames: next..last,
                })?;
                buf.drain(..cut);
                at = end;
                next = last;
            }
            if got == 0 && next < self.frames.len() {
                return Err(self.short(pos - self.range.start));
            }
        }
        Ok((x, pos - self.range.start))
    }

    /// A stream: batches of at least `batch_bytes`, each decoded on a
    /// blocking thread while the next one arrives.
    async fn run_stream<F>(
        &self,
        mut s: BoxStream<'static, object_store::Result<Bytes>>,
        decode: F,
        ctx: &str,
    ) -> Result<(u64, u64)>
    where
        F: FnMut(Batch<'_>) -> Result<u64> + Send + 'static,
    {
        type Job<F> = tokio::task::JoinHandle<(F, Result<u64>)>;
        let cap = self.batch_bytes + (64 << 10);
        let mut buf: Vec<u8> = Vec::with_capacity(cap);
        let (mut at, mut next, mut x, mut received) = (self.range.start, 0usize, 0u64, 0u64);
        let mut idle = Some(decode);
        let mut pending: Option<Job<F>> = None;
        while next < self.frames.len() {
            let (last, end) = self.complete(next, at, buf.len());
            let done = last == self.frames.len();
            if last > next && (done || (end - self.frames[next].0) as usize >= self.batch_bytes) {
                let cut = (end - at) as usize;
                // The batch keeps this buffer; the rest starts a new one.
                let mut rest = Vec::with_capacity(cap.max(buf.len() - cut));
                rest.extend_from_slice(&buf[cut..]);
                let mut batch = std::mem::replace(&mut buf, rest);
                batch.truncate(cut);
                let mut d = match pending.take() {
                    Some(j) => {
                        let (d, r) = j.await.context("decoding frames")?;
                        x ^= r?;
                        d
                    }
                    None => idle.take().expect("the decoder is idle"),
                };
                let frames = next..last;
                pending = Some(tokio::task::spawn_blocking(move || {
                    let r = d(Batch {
                        at,
                        bytes: &batch,
                        frames,
                    });
                    (d, r)
                }));
                at = end;
                next = last;
                continue;
            }
            match s.next().await {
                Some(chunk) => {
                    let chunk = chunk.context_with(|| ctx.to_string())?;
                    received += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                }
                None => return Err(self.short(received)),
            }
        }
        if let Some(j) = pending {
            let (_, r) = j.await.context("decoding frames")?;
            x ^= r?;
        }
        Ok((x, received))
    }
}

/// Reads `buf.len()` bytes at `at`, fewer only at the end of the file.
fn read_full_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64, size: u64) -> IndexEntry {
        IndexEntry {
            pgno: 1,
            offset,
            size,
        }
    }

    #[test]
    fn spans_merge_gaps_and_split_long_runs() {
        let f = vec![(0, e(100, 10)), (1, e(115, 10)), (2, e(200, 10))];
        let s = spans(f.clone(), 5, 1000);
        assert_eq!(
            s.iter().map(|s| s.range.clone()).collect::<Vec<_>>(),
            vec![100..125, 200..210]
        );
        let s = spans(f.clone(), 100, 1000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].frames, vec![0, 1, 2]);
        let s = spans(f, 100, 25);
        assert_eq!(s.len(), 2);
        assert!(spans(Vec::new(), 1, 1).is_empty());
        // Order of the input does not matter.
        let s = spans(vec![(1, e(200, 10)), (0, e(100, 10))], 1000, 1000);
        assert_eq!(s[0].frames, vec![0, 1]);
    }

    #[test]
    fn budget() {
        let b = HoldBudget::new(10);
        assert!(b.try_take(6));
        assert!(!b.try_take(5));
        assert!(b.try_take(4));
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn held_ranges() {
        let h = Held {
            at: 10,
            bytes: Bytes::from_static(b"abcdef"),
        };
        assert_eq!(h.get(11..13).as_deref(), Some(&b"bc"[..]));
        assert_eq!(h.get(9..12), None);
        assert_eq!(h.get(14..17), None);
    }
}
