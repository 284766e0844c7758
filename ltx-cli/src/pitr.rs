//! Point-in-time reads without a restore, shared by `ltx page URL` and
//! `ltx sql`: the target (`--txid` / `--timestamp` / latest), the bucket's
//! one database and its plan, and [`PitPages`], the page source of the
//! SQLite VFS ([`crate::vfs`]): pages of a [`PitDb`] read synchronously
//! on a runtime of its own and cached for the command's duration.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use ltx_compactor::pages::{PitDb, PitStats};
use ltx_compactor::reader::ReadOptions;
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_compactor::RestorePlan;
use ltx_core::TxId;

use crate::vfs::PageSource;

/// The target of `--txid` / `--timestamp` (neither: the latest state).
pub fn target(txid: Option<TxId>, timestamp: Option<i64>) -> Target {
    match (txid, timestamp) {
        (Some(t), _) => Target::Txid(t),
        (None, Some(ms)) => Target::Time(ms),
        (None, None) => Target::Latest,
    }
}

/// Whether a command-line argument names a bucket or replica rather than
/// one LTX file: a URL (`s3://…`, `file://…`) or a directory.
pub fn is_bucket(arg: &std::path::Path) -> bool {
    arg.to_str().is_some_and(crate::remote::is_url) || arg.is_dir()
}

/// A bucket's one database and its plan for `target`.
pub struct Planned {
    /// The bucket.
    pub bucket: Bucket,
    /// The database prefix.
    pub db: String,
    /// The plan.
    pub plan: RestorePlan,
}

/// Opens `url`, finds its one database and plans `target`. For a TXID or
/// latest target the plan's time is the listing's upper bound: the exact
/// time is the last planned file's header timestamp, which the reads that
/// follow open anyway.
///
/// # Errors
/// Bad URLs, listing errors and several or no databases (usage, exit 2);
/// no plan for the target ([`crate::Failed`] after printing why, exit 1).
pub fn plan(rt: &tokio::runtime::Runtime, url: &str, target: Target) -> Result<Planned> {
    let bucket = Bucket::open(url)?;
    let db = rt.block_on(bucket.single_db())?;
    let r = rt.block_on(async {
        let (plan, _) = ltx_compactor::fetch::plan(&bucket, &db, target).await?;
        Ok::<_, ltx_compactor::Error>(plan)
    });
    match r {
        Ok(plan) => Ok(Planned { bucket, db, plan }),
        Err(e) => {
            eprintln!("ltx: error: {e:#}");
            Err(crate::Failed.into())
        }
    }
}

/// How [`PitDb`] reads for queries, where a plan's files are opened for
/// their page indexes and few of their frames are wanted: a file up to
/// 4 KiB with one GET, a larger one with two ranged GETs of its header and
/// of a suffix of 1 KiB plus 1/256 of its size (its tail and index; a
/// third request when the index is longer), so that an L0 file of tens of
/// KiB costs about 1 KiB rather than its body; neighbouring frames read
/// through only when less than 16 KiB apart (a point query reads single
/// frames, not 256 KiB spans), at most 8 MiB per request.
pub fn query_read_options() -> ReadOptions {
    ReadOptions {
        whole_max: 4 << 10,
        suffix_min: 1 << 10,
        span_gap: 16 << 10,
        span_max: 8 << 20,
        ..ReadOptions::default()
    }
}

/// Pages fetched at once at most when reads run in page order.
const READAHEAD_MAX: u32 = 64;

/// Pages cached, in fetch order (the oldest leave first past the cap).
struct Cache {
    pages: HashMap<u32, Arc<[u8]>>,
    order: VecDeque<u32>,
    /// The page after the last fetched batch: a miss on exactly that page
    /// continues a run of misses in page order (`run` long); from the
    /// third on, batches grow (2, 4, 8, … up to [`READAHEAD_MAX`] pages).
    next: u32,
    run: u32,
}

/// The pages of a [`PitDb`] for the SQLite VFS: a page not in the cache is
/// read with [`PitDb::read_pages`] on this source's runtime (blocking the
/// SQLite thread), with a read-ahead of the following pages when SQLite
/// reads in page order (a table scan of a freshly written table), and kept
/// while the cache holds fewer than `cache_pages` pages.
pub struct PitPages {
    rt: tokio::runtime::Runtime,
    db: PitDb,
    cache: Mutex<Cache>,
    cache_pages: usize,
    /// Pages served (from the cache or fetched).
    pub reads: std::sync::atomic::AtomicU64,
}

impl PitPages {
    /// A source over `db`, caching at most `cache_bytes` of pages.
    pub fn new(rt: tokio::runtime::Runtime, db: PitDb, cache_bytes: u64) -> PitPages {
        let ps = db.page_size().bytes() as u64;
        PitPages {
            rt,
            cache_pages: usize::try_from((cache_bytes / ps).max(16)).unwrap_or(usize::MAX),
            db,
            cache: Mutex::new(Cache {
                pages: HashMap::new(),
                order: VecDeque::new(),
                next: 0,
                run: 0,
            }),
            reads: Default::default(),
        }
    }

    /// The database.
    pub fn db(&self) -> &PitDb {
        &self.db
    }

    /// What was read so far.
    pub fn stats(&self) -> PitStats {
        self.db.stats()
    }
}

impl PageSource for PitPages {
    fn page_size(&self) -> usize {
        self.db.page_size().bytes()
    }

    fn pages(&self) -> u32 {
        self.db.commit()
    }

    fn read_page(&self, pgno: u32) -> std::result::Result<Arc<[u8]>, String> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = c.pages.get(&pgno) {
            return Ok(p.clone());
        }
        c.run = if pgno == c.next { c.run + 1 } else { 0 };
        let window = if c.run < 2 {
            1
        } else {
            (1u32 << (c.run - 1).min(6)).min(READAHEAD_MAX)
        };
        let last = pgno
            .saturating_add(window - 1)
            .min(self.db.commit())
            .max(pgno);
        let want: Vec<u32> = (pgno..=last)
            .filter(|p| *p == pgno || !c.pages.contains_key(p))
            .collect();
        c.next = last.saturating_add(1);
        let got = self
            .rt
            .block_on(self.db.read_pages(&want))
            .map_err(|e| format!("{e:#}"))?;
        let mut first = None;
        for (p, data) in want.into_iter().zip(got) {
            let data: Arc<[u8]> = data.into();
            if p == pgno {
                first = Some(data.clone());
            }
            if c.pages.insert(p, data).is_none() {
                c.order.push_back(p);
            }
        }
        while c.pages.len() > self.cache_pages {
            match c.order.pop_front() {
                Some(old) => {
                    c.pages.remove(&old);
                }
                None => break,
            }
        }
        first.ok_or_else(|| format!("page {pgno} was not read"))
    }
}
