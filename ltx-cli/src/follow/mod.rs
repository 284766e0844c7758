//! `ltx restore URL -o OUT --follow`: restore, then keep OUT current while
//! other processes read it with SQLite.
//!
//! At each interval the follower lists the bucket and plans the next step
//! from the TXID OUT holds ([`ltx_compactor::restore::plan_follow`]: the
//! latest reachable state, by the fewest files over every level, so it
//! continues from the levels when the L0 files it expected were compacted
//! away). It fetches only the winning frames of those files into a sparse
//! staging file beside OUT ([`ltx_compactor::fetch::stage_pages`]), then,
//! holding SQLite's locks on OUT only for local I/O, writes them into
//! OUT's WAL as one SQLite transaction and publishes it ([`live`]);
//! SQLite then checkpoints it into OUT. Readers see each step wholly or
//! not at all.
//!
//! The TXID OUT holds is recorded in `OUT.ltx-follow` (JSON, replaced
//! atomically), with the database checksum and size. Before a step's
//! commit frame is written the file names the step as pending, so a
//! follower killed at any moment restarts knowing OUT holds one of two
//! states (told apart by the checksum when the files track one).
//!
//! Checks: with checksums tracked, each step's result must have the last
//! file's post-apply checksum, computed from OUT's checksum, the old
//! versions of the pages the step replaces and the new ones, before
//! anything is written; a first file that starts right after OUT's TXID
//! must start from OUT's checksum. A mismatch stops the follower (exit 1)
//! with OUT at the last good state. Listing and read errors (a file
//! compacted away between the listing and the read, say) are retried at
//! the next interval; a gap no file bridges is reported on standard error
//! (`ltx: gap: ...`) and retried, never skipped.

pub mod live;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ltx_compactor::fetch::{self, RestoreOptions, StagedPages};
use ltx_compactor::restore::{plan_follow, FollowGap, FollowPlan, RestorePlan, Target};
use ltx_compactor::store::Bucket;
use ltx_core::checksum::DbChecksum;
use ltx_core::{Checksum, PageSize, TxId};
use serde::{Deserialize, Serialize};

use crate::db::{side_file, TempFile};
use crate::db::{sqlite_check, IntegrityCheck};
use crate::{output, remote};

use live::{Opened, Session};

/// What `--follow` needs from `ltx restore`'s arguments.
pub struct Options {
    /// The bucket URL.
    pub url: String,
    /// The database file kept current.
    pub out: PathBuf,
    /// Time between listings.
    pub interval: Duration,
    /// Replace an OUT that is not a followed database.
    pub force: bool,
    /// JSON lines instead of text.
    pub json: bool,
    /// Spans read at once.
    pub concurrency: usize,
    /// SQLite check of the initial restore.
    pub integrity: IntegrityCheck,
    /// Exit 0 when the URL holds no database.
    pub if_replica_exists: bool,
}

/// The follower's record beside OUT (`OUT.ltx-follow`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Format version (1).
    pub version: u32,
    /// The URL followed.
    pub url: String,
    /// The database's prefix in the bucket.
    pub db: String,
    /// The TXID OUT holds (0: the initial restore has not finished).
    #[serde(with = "hex_txid")]
    pub txid: TxId,
    /// Its database checksum, when the files track checksums.
    #[serde(with = "opt_checksum")]
    pub checksum: Option<Checksum>,
    /// Page size.
    pub page_size: u32,
    /// Database size in pages.
    pub commit: u32,
    /// A step being written: OUT holds `txid` or this one.
    pub pending: Option<Pending>,
    /// When this record was written (RFC 3339).
    pub updated: String,
}

/// A step being written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// Its TXID.
    #[serde(with = "hex_txid")]
    pub txid: TxId,
    /// Its database checksum, when tracked.
    #[serde(with = "opt_checksum")]
    pub checksum: Option<Checksum>,
    /// Its size in pages.
    pub commit: u32,
}

mod hex_txid {
    use ltx_core::TxId;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &TxId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TxId, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u64::from_str_radix(&s, 16)
                .map(TxId)
                .map_err(serde::de::Error::custom);
        }
        Err(serde::de::Error::custom(format!(
            "{s:?} is not 16 hex digits"
        )))
    }
}

mod opt_checksum {
    use ltx_core::Checksum;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(c: &Option<Checksum>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => s.serialize_str(&c.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Checksum>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `OUT.ltx-follow`.
pub fn state_path(out: &Path) -> PathBuf {
    side_file(out, ".ltx-follow")
}

/// Reads the record beside `out` (`None` when there is none).
///
/// # Errors
/// A record that cannot be read or parsed.
pub fn read_state(out: &Path) -> Result<Option<State>> {
    let p = state_path(out);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{}: not a follower's record", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", p.display())),
    }
}

/// Replaces the record atomically (temporary file, fsync, rename, fsync
/// of the directory).
fn write_state(out: &Path, st: &State) -> Result<()> {
    let p = state_path(out);
    let mut st = st.clone();
    st.updated = output::rfc3339_ms(crate::encode::now_ms());
    let tmp = TempFile::beside(&p, "write")?;
    let mut bytes = serde_json::to_vec_pretty(&st)?;
    bytes.push(b'\n');
    tmp.file()
        .write_all_at(&bytes, 0)
        .with_context(|| format!("{}: cannot write", tmp.path().display()))?;
    tmp.commit(&p)?;
    Ok(())
}

/// A step's failure: retried at the next interval, or the end.
enum StepError {
    /// Retry (store errors, busy locks).
    Transient(anyhow::Error),
    /// Stop with exit 1, OUT at the last good state.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Fatal(e)
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        StepError::Fatal(e.into())
    }
}

impl From<ltx_compactor::Error> for StepError {
    fn from(e: ltx_compactor::Error) -> Self {
        classify(e)
    }
}

/// A compactor error: store and task failures are transient (a file
/// compacted away since the listing is a `NotFound`), the rest (corrupt
/// files, checksums, local I/O) fatal.
fn classify(e: ltx_compactor::Error) -> StepError {
    let transient = matches!(
        e.root(),
        ltx_compactor::Error::Store { .. } | ltx_compactor::Error::Join(_)
    );
    let e = anyhow::Error::new(e);
    if transient {
        StepError::Transient(e)
    } else {
        StepError::Fatal(e)
    }
}

/// One step's report.
#[derive(Serialize)]
struct StepJson<'a> {
    event: &'static str,
    #[serde(with = "hex_txid")]
    from: TxId,
    #[serde(with = "hex_txid")]
    to: TxId,
    files: &'a [String],
    pages: usize,
    frames: u32,
    commit: u32,
    bytes_read: u64,
    checksum: Option<String>,
    online: bool,
    /// How long SQLite's locks on OUT were held (µs).
    locked_us: u64,
    elapsed_ms: u64,
}

/// The initial restore's line.
#[derive(Serialize)]
struct RestoreJson<'a> {
    event: &'static str,
    report: &'a fetch::RestoreReport,
}

/// The line of a follower that continues from OUT's record.
#[derive(Serialize)]
struct ResumeJson {
    event: &'static str,
    txid: String,
    recorded: String,
    interrupted: Option<String>,
    checksum: Option<String>,
}

#[derive(Serialize)]
struct GapJson<'a> {
    event: &'static str,
    #[serde(flatten)]
    gap: &'a FollowGap,
    message: String,
}

/// How long a step waits for SQLite's locks on OUT before it is retried
/// at the next interval.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// The checkpoint's busy timeout: none. A reader still on a snapshot
/// that uses the WAL makes the TRUNCATE checkpoint copy what it can and
/// leave the WAL for the next step's attempt, rather than keep the
/// follower waiting.
const CHECKPOINT_BUSY: Duration = Duration::ZERO;
/// How often a gap that lasts is reported again.
const GAP_REPEAT: Duration = Duration::from_secs(60);

/// Locks OUT for a step, retrying busy locks (every few milliseconds, up
/// to [`LOCK_PATIENCE`]) and letting SQLite checkpoint a WAL left with no
/// connection open.
fn lock(out: &Path, ps: PageSize) -> Result<Session, StepError> {
    let started = Instant::now();
    let mut checkpoints = 0;
    loop {
        match Session::open(out, ps)? {
            Opened::Ready(s) => return Ok(*s),
            Opened::NeedsCheckpoint if checkpoints < 3 => {
                checkpoints += 1;
                live::checkpoint(out, CHECKPOINT_BUSY).map_err(StepError::Transient)?;
                continue;
            }
            Opened::NeedsCheckpoint => {
                return Err(StepError::Transient(anyhow!(
                    "{}: its WAL could not be checkpointed",
                    out.display()
                )))
            }
            Opened::Busy(b) => {
                // A wal-index header that stays invalid is rebuilt by the
                // next connection that reads: ours.
                if b == live::Busy::Header && started.elapsed() > Duration::from_secs(1) {
                    live::checkpoint(out, CHECKPOINT_BUSY).map_err(StepError::Transient)?;
                }
                if started.elapsed() > LOCK_PATIENCE {
                    return Err(StepError::Transient(anyhow!(
                        "{}: busy for {:.0} s: {b}",
                        out.display(),
                        started.elapsed().as_secs_f64(),
                    )));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// OUT's size in pages and database checksum as readers see it now,
/// reading every page (without holding back connections that open OUT
/// meanwhile: [`Session::read_only`]).
fn full_checksum(out: &Path, ps: PageSize) -> Result<(u32, Checksum), StepError> {
    let mut s = lock(out, ps)?;
    s.read_only()?;
    Ok((s.db_pages(), s.checksum()?))
}

/// Runs `ltx restore URL -o OUT --follow`: returns only on a fatal error
/// (or with `--if-replica-exists` and no database).
///
/// # Errors
/// Usage errors (exit 2); fatal step errors are reported and returned as
/// [`crate::Failed`] (exit 1).
pub fn run(o: Options, out: &mut dyn Write) -> Result<()> {
    if o.out.is_dir() {
        bail!("{}: is a directory", o.out.display());
    }
    let rt = remote::runtime()?;
    let found = Bucket::open(&o.url).and_then(|b| {
        let dbs = rt.block_on(b.discover())?;
        Ok((b, dbs))
    });
    if o.if_replica_exists && found.as_ref().map_or(true, |(_, d)| d.is_empty()) {
        eprintln!(
            "ltx: {}: no replica: nothing restored (--if-replica-exists)",
            o.url
        );
        return Ok(());
    }
    let (bucket, dbs) = found?;
    let db = bucket.single_of(dbs)?;
    // Usage errors (exit 2) before anything is written.
    let present = std::fs::metadata(&o.out).is_ok_and(|m| m.len() > 0);
    match read_state(&o.out)? {
        None if present && !o.force => bail!(
            "{} exists but {} does not: it is not a database this command follows (use --force to restore over it)",
            o.out.display(),
            state_path(&o.out).display()
        ),
        Some(st) if present && st.txid.0 > 0 && (st.url != o.url || st.db != db) => bail!(
            "{} follows {} (database {:?}), not {}",
            o.out.display(),
            st.url,
            st.db,
            o.url
        ),
        _ => {}
    }
    // One follower per OUT: an advisory lock (flock) on OUT.ltx-follow.lock
    // for as long as this process runs.
    let lock_path = side_file(&o.out, ".ltx-follow.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot open", lock_path.display()))?;
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{}: another ltx restore --follow is following it ({} is locked)",
            o.out.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock", lock_path.display()))
        }
    }
    for r in crate::db::remove_stale_temps(&o.out, "follow") {
        eprintln!("ltx: removed {} (left by a killed follower)", r.display());
    }
    let mut f = Follower {
        o,
        bucket,
        db,
        rt,
        gap: None,
        _lock: lock_file,
    };
    let st = match f.start(out) {
        Ok(st) => st,
        Err(StepError::Fatal(e)) | Err(StepError::Transient(e)) => {
            if e.downcast_ref::<crate::Failed>().is_some() {
                return Err(e);
            }
            return remote::fail(out, &format!("{e:#}"));
        }
    };
    f.follow(st, out)
}

struct Follower {
    o: Options,
    bucket: Bucket,
    db: String,
    rt: tokio::runtime::Runtime,
    /// The gap last reported and when.
    gap: Option<(FollowGap, Instant)>,
    /// Held (locked) while the process runs.
    _lock: std::fs::File,
}

impl Follower {
    fn fresh_state(&self, txid: TxId, checksum: Option<Checksum>, ps: u32, commit: u32) -> State {
        State {
            version: 1,
            url: self.o.url.clone(),
            db: self.db.clone(),
            txid,
            checksum,
            page_size: ps,
            commit,
            pending: None,
            updated: String::new(),
        }
    }

    /// The state to follow from: OUT's record checked against OUT, or an
    /// initial restore.
    fn start(&mut self, out: &mut dyn Write) -> Result<State, StepError> {
        let outp = self.o.out.clone();
        let present = std::fs::metadata(&outp).is_ok_and(|m| m.len() > 0);
        let st = read_state(&outp)?;
        match (present, st) {
            (true, Some(st)) if st.txid.0 > 0 => self.resume(st, out),
            // No OUT, --force, or an initial restore that may or may not
            // have finished: (again) from scratch.
            _ => self.initial(out),
        }
    }

    /// Restores OUT from scratch (the latest state), then records it.
    fn initial(&mut self, out: &mut dyn Write) -> Result<State, StepError> {
        let outp = self.o.out.clone();
        let (plan, _) = self
            .rt
            .block_on(fetch::plan(&self.bucket, &self.db, Target::Latest))
            .map_err(classify_fatal)?;
        let wal = side_file(&outp, "-wal");
        if wal.exists() {
            return Err(StepError::Fatal(anyhow!(
                "{} exists: a WAL beside the output would be applied over the restored file; remove it first",
                wal.display()
            )));
        }
        // Named before the rename: a restart finds it and checks OUT.
        let mut pre = self.fresh_state(TxId(0), None, 0, 0);
        pre.pending = Some(Pending {
            txid: plan.txid,
            checksum: None,
            commit: 0,
        });
        write_state(&outp, &pre)?;
        let integrity = self.o.integrity;
        let pb = output::progress(true, Some(plan.bytes), "restore");
        let pbc = pb.clone();
        let opts = RestoreOptions {
            concurrency: self.o.concurrency,
            force: true,
            progress: Some(std::sync::Arc::new(move |d, t| {
                pbc.set_length(t);
                pbc.set_position(d);
            })),
            pre_commit: (integrity != IntegrityCheck::None).then(|| {
                std::sync::Arc::new(move |p: &Path| Ok(sqlite_check(p, integrity)?))
                    as fetch::PreCommitCheck
            }),
            ..Default::default()
        };
        let started = Instant::now();
        let r = self.rt.block_on(fetch::restore_to_file(
            &self.bucket,
            &self.db,
            &plan,
            &outp,
            &opts,
        ));
        pb.finish_and_clear();
        let rep = r.map_err(classify_fatal)?;
        let checksum = rep
            .checksum
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow!("{e}"))?;
        let st = self.fresh_state(rep.txid, checksum, rep.page_size, rep.commit);
        check_wal_mode(&outp)?;
        write_state(&outp, &st)?;
        if self.o.json {
            json_line(
                out,
                &RestoreJson {
                    event: "restore",
                    report: &rep,
                },
            )?;
        } else {
            writeln!(
                out,
                "restored TXID {} from {} file{} ({} bytes read, {} pages) to {} in {:.2}s; following {} every {}",
                rep.txid,
                rep.files.len(),
                if rep.files.len() == 1 { "" } else { "s" },
                rep.bytes_read,
                rep.commit,
                outp.display(),
                started.elapsed().as_secs_f64(),
                self.o.url,
                humanize(self.o.interval)
            )?;
        }
        out.flush()?;
        Ok(st)
    }

    /// Continues from OUT's record: OUT must hold its state, or the
    /// pending step's (told apart by the checksum when tracked; without
    /// checksums the next step must reach at least the pending TXID,
    /// which gives the same result from either).
    fn resume(&mut self, mut st: State, out: &mut dyn Write) -> Result<State, StepError> {
        let outp = self.o.out.clone();
        let ps = PageSize::new(st.page_size)
            .ok_or_else(|| anyhow!("{}: bad page size", state_path(&outp).display()))?;
        check_wal_mode(&outp)?;
        let tracked = st.checksum.is_some() || st.pending.is_some_and(|p| p.checksum.is_some());
        let (pages, sum) = if tracked {
            let (p, c) = full_checksum(&outp, ps)?;
            (p, Some(c))
        } else {
            (lock(&outp, ps)?.db_pages(), None)
        };
        let was = st.txid;
        let holds = |c: Option<Checksum>, commit: u32| pages == commit && (c.is_none() || c == sum);
        let pending = st.pending;
        match pending {
            _ if st.checksum.is_some() && holds(st.checksum, st.commit) => st.pending = None,
            Some(p) if p.checksum.is_some() && holds(p.checksum, p.commit) => {
                st = State {
                    txid: p.txid,
                    checksum: p.checksum,
                    commit: p.commit,
                    pending: None,
                    ..st
                };
            }
            None if st.checksum.is_none() && holds(None, st.commit) => {}
            Some(p)
                if st.checksum.is_none()
                    && p.checksum.is_none()
                    && (holds(None, st.commit) || holds(None, p.commit)) => {}
            _ => {
                return Err(StepError::Fatal(anyhow!(
                    "{} does not hold the state {} records (TXID {}, {} pages{}; it has {} pages{}): it was changed by something else than ltx restore --follow; restore it again with --force",
                    outp.display(),
                    state_path(&outp).display(),
                    st.txid,
                    st.commit,
                    st.checksum.map_or(String::new(), |c| format!(", checksum {c}")),
                    pages,
                    sum.map_or(String::new(), |c| format!(", checksum {c}"))
                )));
            }
        }
        write_state(&outp, &st)?;
        if self.o.json {
            json_line(
                out,
                &ResumeJson {
                    event: "resume",
                    txid: st.txid.to_string(),
                    recorded: was.to_string(),
                    interrupted: pending.map(|p| p.txid.to_string()),
                    checksum: st.checksum.map(|c| c.to_string()),
                },
            )?;
            out.flush()?;
        } else {
            writeln!(
                out,
                "resuming {} at TXID {}{}{}; following {} every {}",
                outp.display(),
                st.txid,
                if st.txid != was {
                    format!(" (the step from {was} had been written)")
                } else {
                    String::new()
                },
                match (st.checksum, &st.pending) {
                    (Some(c), _) => format!(", checksum {c} checked"),
                    (None, Some(p)) => format!(
                        " or {} (a step was interrupted; no checksums: the next step reaches at least that)",
                        p.txid
                    ),
                    (None, None) => String::new(),
                },
                self.o.url,
                humanize(self.o.interval)
            )?;
            out.flush()?;
        }
        Ok(st)
    }

    /// The loop: one step per interval, forever.
    fn follow(&mut self, mut st: State, out: &mut dyn Write) -> Result<()> {
        loop {
            let started = Instant::now();
            match self.step(&mut st, out) {
                Ok(()) => {}
                Err(StepError::Transient(e)) => {
                    eprintln!(
                        "ltx: {e:#} (OUT stays at TXID {}; retrying in {})",
                        st.txid,
                        humanize(self.o.interval)
                    );
                }
                Err(StepError::Fatal(e)) => {
                    return remote::fail(
                        out,
                        &format!(
                            "{e:#} ({} left at TXID {}, the last good state)",
                            self.o.out.display(),
                            st.txid
                        ),
                    );
                }
            }
            out.flush()?;
            if let Some(rest) = self.o.interval.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    fn report_gap(&mut self, g: FollowGap, out: &mut dyn Write) -> Result<()> {
        // The same missing TXIDs are the same gap, however far the bucket
        // has grown past them since.
        let same = |old: &FollowGap| (old.reached, old.next_min) == (g.reached, g.next_min);
        let again = match &self.gap {
            Some((old, at)) if same(old) => at.elapsed() >= GAP_REPEAT,
            _ => true,
        };
        if !again {
            return Ok(());
        }
        let still = self.gap.as_ref().is_some_and(|(old, _)| same(old));
        let msg = format!(
            "{}{g}; retrying every {}",
            if still { "still: " } else { "" },
            humanize(self.o.interval)
        );
        eprintln!("ltx: gap: {msg}");
        if self.o.json {
            json_line(
                out,
                &GapJson {
                    event: "gap",
                    gap: &g,
                    message: msg,
                },
            )?;
        }
        self.gap = Some((g, Instant::now()));
        Ok(())
    }

    /// Lists, plans and applies one step.
    fn step(&mut self, st: &mut State, out: &mut dyn Write) -> Result<(), StepError> {
        let (catalog, _) = self
            .rt
            .block_on(self.bucket.catalog(&self.db))
            .map_err(classify)?;
        let (plan, gap) = match plan_follow(&catalog, st.txid) {
            FollowPlan::UpToDate => {
                self.gap_closed();
                return Ok(());
            }
            FollowPlan::Gap(g) => {
                self.report_gap(g, out)?;
                return Ok(());
            }
            FollowPlan::Step { plan, gap } => (plan, gap),
        };
        if let Some(p) = st.pending.filter(|p| plan.txid < p.txid) {
            return Err(StepError::Transient(anyhow!(
                "the bucket reaches TXID {} but OUT may hold {} already (a step was interrupted): waiting for the bucket to reach it",
                plan.txid,
                p.txid
            )));
        }
        self.apply(st, &plan, out)?;
        match gap {
            Some(g) => self.report_gap(g, out)?,
            None => self.gap_closed(),
        }
        Ok(())
    }

    fn gap_closed(&mut self) {
        if let Some((g, _)) = self.gap.take() {
            eprintln!("ltx: gap after TXID {} closed", g.reached);
        }
    }

    /// Fetches the step's pages, checks them against OUT and writes them.
    fn apply(
        &mut self,
        st: &mut State,
        plan: &RestorePlan,
        out: &mut dyn Write,
    ) -> Result<(), StepError> {
        let outp = self.o.out.clone();
        let started = Instant::now();
        let staging = TempFile::beside(&outp, "follow")?;
        let opts = RestoreOptions {
            concurrency: self.o.concurrency,
            ..Default::default()
        };
        let staged: StagedPages = self
            .rt
            .block_on(fetch::stage_pages(
                &self.bucket,
                &self.db,
                plan,
                staging.file(),
                &opts,
            ))
            .map_err(classify)?;
        let h = &staged.header;
        if h.page_size.get() != st.page_size {
            return Err(StepError::Fatal(anyhow!(
                "{}: page size {} but {} has {}",
                staged.files[0],
                h.page_size,
                outp.display(),
                st.page_size
            )));
        }
        if let (Some(pre), Some(cur)) = (staged.pre_apply, st.checksum) {
            if h.min_txid.0 == st.txid.0 + 1 && pre != cur {
                return Err(StepError::Fatal(anyhow!(
                    "checksum mismatch: {} starts from database checksum {pre}, but {} holds TXID {} with checksum {cur}",
                    staged.files[0],
                    outp.display(),
                    st.txid
                )));
            }
        }
        let ps = h.page_size;
        let psz = ps.bytes();
        let commit = h.commit;
        let s_file = staging.file();
        if staged.pgnos.first() == Some(&1) {
            let mut hdr = [0u8; 20];
            s_file
                .read_exact_at(&mut hdr, 0)
                .context("reading the staging file")?;
            if hdr[18] != 2 || hdr[19] != 2 {
                return Err(StepError::Fatal(anyhow!(
                    "{}: the database leaves WAL mode at TXID {} (header bytes 18 and 19 are {} and {}): its readers would no longer read the WAL the steps go through",
                    staged.files.last().map_or("", String::as_str),
                    h.max_txid,
                    hdr[18],
                    hdr[19]
                )));
            }
        }
        // Named before anything is locked or written: a restart finds OUT
        // at the state recorded or at this one.
        if !staged.pgnos.is_empty() {
            let mut pending = st.clone();
            pending.pending = Some(Pending {
                txid: h.max_txid,
                checksum: staged.post_apply,
                commit,
            });
            write_state(&outp, &pending)?;
            crash_point("pending");
        }
        let before_append = |e: StepError| {
            // Nothing was written: the record goes back as it was.
            if !staged.pgnos.is_empty() {
                if let Err(w) = write_state(&outp, st) {
                    eprintln!("ltx: {w:#}");
                }
            }
            e
        };
        // OUT's checksum when the record cannot say it (a pending step
        // without checksums, files that start tracking checksums): read
        // before the step's locks.
        let base = match (staged.post_apply, st.checksum) {
            (None, _) => None,
            (Some(_), Some(c)) if st.pending.is_none() => Some(c),
            (Some(_), _) => Some(full_checksum(&outp, ps).map_err(before_append)?.1),
        };
        let mut session = lock(&outp, ps).map_err(before_append)?;
        let locked = Instant::now();
        let cur = session.db_pages();
        let checked = (|| {
            if cur != st.commit && st.pending.is_none() {
                return Err(StepError::Fatal(anyhow!(
                    "{} has {cur} pages but was left with {} at TXID {}: it was changed by something else than ltx restore --follow",
                    outp.display(),
                    st.commit,
                    st.txid
                )));
            }
            // The result's checksum, from the old versions of the pages the
            // step replaces or cuts off, before anything is written.
            let (Some(post), Some(base)) = (staged.post_apply, base) else {
                return Ok(None);
            };
            let mut sum = DbChecksum::from_value(ps, base);
            let mut old = vec![0u8; psz];
            let lock_pgno = ps.lock_pgno();
            for &p in staged.pgnos.iter().filter(|&&p| p <= cur) {
                session.read_page(p, &mut old)?;
                sum.remove(p, &old);
            }
            for p in (commit + 1..=cur).filter(|&p| p != lock_pgno) {
                session.read_page(p, &mut old)?;
                sum.remove(p, &old);
            }
            sum.add_checksum(Checksum(staged.xor));
            if commit > 0 && sum.value() != post {
                return Err(StepError::Fatal(anyhow!(
                    "checksum mismatch: applying {} to {} (TXID {}) gives database checksum {}, but {} says {post} after TXID {}: nothing was written",
                    staged.files.join(", "),
                    outp.display(),
                    st.txid,
                    sum.value(),
                    staged.files.last().map_or("", String::as_str),
                    h.max_txid
                )));
            }
            if staged.pgnos.is_empty() && commit != cur {
                return Err(StepError::Fatal(anyhow!(
                    "{}: a step that changes the database size ({cur} to {commit} pages) without pages",
                    staged.files.join(", ")
                )));
            }
            Ok(Some(post))
        })();
        let new_sum = match checked {
            Ok(s) => s,
            Err(e) => {
                drop(session);
                return Err(before_append(e));
            }
        };
        let frames = if staged.pgnos.is_empty() {
            0
        } else {
            let pg = &staged.pgnos;
            session.append(pg, commit, |i, buf| {
                s_file
                    .read_exact_at(buf, u64::from(pg[i] - 1) * psz as u64)
                    .context("reading the staging file")
            })?
        };
        let online = session.online();
        drop(session);
        crash_point("published");
        let locked_us = locked.elapsed().as_micros() as u64;
        drop(staging);
        let from = st.txid;
        *st = State {
            txid: h.max_txid,
            checksum: new_sum,
            commit,
            pending: None,
            ..st.clone()
        };
        write_state(&outp, st)?;
        if let Err(e) = live::checkpoint(&outp, CHECKPOINT_BUSY) {
            eprintln!(
                "ltx: checkpoint of {} failed: {e:#} (retried after the next step)",
                outp.display()
            );
        }
        let elapsed = started.elapsed();
        if self.o.json {
            json_line(
                out,
                &StepJson {
                    event: "step",
                    from,
                    to: st.txid,
                    files: &staged.files,
                    pages: staged.pgnos.len(),
                    frames,
                    commit,
                    bytes_read: staged.bytes_read,
                    checksum: new_sum.map(|c| c.to_string()),
                    online,
                    locked_us,
                    elapsed_ms: elapsed.as_millis() as u64,
                },
            )?;
        } else {
            writeln!(
                out,
                "followed TXID {from} -> {}: {} file{}, {} pages, {} bytes read in {:.3}s{}",
                st.txid,
                staged.files.len(),
                if staged.files.len() == 1 { "" } else { "s" },
                staged.pgnos.len(),
                staged.bytes_read,
                elapsed.as_secs_f64(),
                match new_sum {
                    Some(c) => format!(", checksum {c}"),
                    None => String::new(),
                }
            )?;
        }
        Ok(())
    }
}

/// Compactor errors of the initial restore are fatal (a plain restore's
/// would be exit 1 too).
fn classify_fatal(e: ltx_compactor::Error) -> StepError {
    StepError::Fatal(anyhow::Error::new(e))
}

/// A followed database must be in WAL mode (header bytes 18 and 19 are 2),
/// as every database Litestream replicates is: readers then look for
/// changes in its WAL, which is where the steps go.
fn check_wal_mode(out: &Path) -> Result<()> {
    let f = std::fs::File::open(out).with_context(|| format!("{}: cannot open", out.display()))?;
    let mut b = [0u8; 20];
    f.read_exact_at(&mut b, 0)
        .with_context(|| format!("{}: reading the header", out.display()))?;
    if !crate::db::is_sqlite(&b) {
        bail!("{}: not an SQLite database", out.display());
    }
    if b[18] != 2 || b[19] != 2 {
        bail!(
            "{}: not a WAL-mode database (header bytes 18 and 19 are {} and {}): --follow writes each step through the WAL, which readers of a rollback-journal database do not read",
            out.display(),
            b[18],
            b[19]
        );
    }
    Ok(())
}

/// A crash for tests: when the environment variable `LTX_FOLLOW_CRASH`
/// names this point, the process exits at once with code 99 (no
/// destructors, no cleanup, the locks released by the kernel: what a
/// SIGKILL at that moment leaves). Points: `pending` (the record names
/// the step, nothing written), `wal` (the step's frames and commit frame
/// are in the WAL and fsynced, not yet published in the wal-index),
/// `published` (published, the record still names it pending).
pub fn crash_point(name: &str) {
    if std::env::var_os("LTX_FOLLOW_CRASH").is_some_and(|v| v == name) {
        std::process::exit(99);
    }
}

/// One JSON object on one line (keys sorted, as ltx's JSON always is):
/// `--follow --json` prints a stream of events.
fn json_line(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, &serde_json::to_value(v)?)?;
    writeln!(out)?;
    Ok(())
}

/// `1s`, `500ms`, `2m`.
pub fn humanize(d: Duration) -> String {
    ltx_compactor::policy::duration_serde::format(d.as_millis() as i64)
}
