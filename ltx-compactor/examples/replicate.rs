//! A replicator built only from this workspace's public APIs: it ships a
//! live SQLite database's transactions to a bucket in Litestream's layout,
//! as L0 files that `ltx restore` and `litestream restore` (0.5.17) read.
//!
//! ```text
//! cargo run --release -p ltx-compactor --example replicate -- app.db file:///backups/app
//! cargo run --release -p ltx-compactor --example replicate -- app.db s3://bucket/app --interval-ms 200
//! ```
//!
//! It is an example of the library (what a replicator author starts from),
//! not a Litestream replacement: one database, one bucket, no retention.
//! Pieces: [`ltx_core::wal::WalReader`] (the `-wal` file, validated by its
//! salts and checksums), [`ltx_core::wal::encode_transaction`] and
//! [`ltx_core::Encoder`] (L0 files), [`ltx_compactor::store::Bucket`]
//! (uploads with Litestream's time metadata) and
//! [`ltx_compactor::lease::Lease`] (one replicator per database, on a key
//! of its own, `<db>/replicate/`, so that a compactor can run beside it).
//!
//! # Protocol
//!
//! Files: every committed WAL transaction becomes one L0 file with the
//! next TXID (`min = max`), NoChecksum like Litestream's, carrying its WAL
//! offset, size and salts. The first file (TXID 1) is a snapshot: every
//! page as of the WAL's last commit. Uploads are single PUTs, so a file is
//! in the bucket whole or not at all.
//!
//! Pinning: a dedicated connection holds a read transaction at all times.
//! SQLite then cannot restart the WAL (overwrite it from the start) under
//! frames not yet shipped: a reader whose snapshot includes WAL frames
//! blocks restarts outright, and a reader that began when the WAL was
//! fully checkpointed blocks checkpoints, so the WAL restarts only if it
//! is exactly as it was when the read began. The read transaction is
//! therefore (re)started only while we hold SQLite's write lock (`BEGIN
//! IMMEDIATE` on a second connection) and have shipped everything (or
//! hold it as a full image in memory, uploaded right after): any later
//! restart loses nothing, and the new WAL (checkpoint sequence and salt 1
//! one higher) continues at offset 32 with the next TXID. Writers wait
//! only for what was committed since an unlocked catch-up just before.
//! The process also keeps a descriptor of the database file open for its
//! whole life: closing one would drop SQLite's POSIX locks on the file
//! (all of a process's locks on a file go with any of its descriptors),
//! and a writer closing its connection would then checkpoint and delete
//! the WAL under us.
//!
//! Polling: every `--interval-ms`, read the WAL from the shipped position
//! to its end (in memory, checked by the reader's running checksum, so a
//! frame being rewritten is never taken), and ship each committed
//! transaction.
//!
//! Checkpointing: after `--checkpoint-frames` frames, under the write
//! lock: ship the rest, end the read transaction, `PRAGMA
//! wal_checkpoint(PASSIVE)`, begin the read again, release the lock. The
//! next writer restarts the WAL, and we follow it. Writers' own automatic
//! checkpoints can only copy frames we pin into the database file.
//!
//! Resuming (after a crash or a stop): the highest L0 file's header gives
//! the position (WAL offset + size, salts). If the WAL still has those
//! salts and a commit ending there, shipping continues from it; otherwise
//! (the WAL was checkpointed and restarted while we were down) the next
//! TXID is a full image of the database (every page, from the WAL's
//! frames and the database file, read under the write lock, uploaded
//! after it). Nothing is lost, nothing is shipped twice.
//!
//! Only transactions SQLite has published count: a writer killed after
//! writing a commit frame but before publishing it in the WAL index
//! (`-shm`) leaves a transaction SQLite never committed and later
//! overwrites. So shipping stops at the index's last frame (`mxFrame` of
//! [`ltx_core::wal::ShmHeader`], when its salts are the WAL's; none of a
//! restarted WAL's frames count before the index names its salts), and a
//! poll that finds the index mid-update ships nothing.
//!
//! On SIGTERM or ctrl-c it ships what is committed and exits, leaving its
//! connections unclosed on purpose: closing the last connection makes
//! SQLite checkpoint and delete the WAL, and a restarted replicator would
//! then have to ship a full image.
//!
//! Options: `--interval-ms N` (1000), `--checkpoint-frames N` (1000),
//! `--holder NAME` (the lease holder; give a restarted service the same
//! name so it takes its lease back at once; default `replicate-<pid>`),
//! `--lease-ttl-ms N` (30000). Logs are plain lines on stderr.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ltx_compactor::catalog::{DbLocation, Layout};
use ltx_compactor::lease::Lease;
use ltx_compactor::store::{join, now_ms, Bucket};
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::wal::{
    self, encode_transaction, LtxParams, PageAt, PageRef, ShmHeader, Transaction, WalEvent,
    WalHeader, WalIndex, WalReader, SHM_HEADER_SIZE, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};
use object_store::{PutMode, PutOptions};
use rusqlite::{Connection, OpenFlags};

const USAGE: &str = "usage: replicate DB URL [--interval-ms N] [--checkpoint-frames N] \
                     [--holder NAME] [--lease-ttl-ms N]";

struct Args {
    db: PathBuf,
    url: String,
    interval: Duration,
    checkpoint_frames: u64,
    holder: String,
    lease_ttl_ms: i64,
}

fn parse_args() -> Result<Args> {
    let mut pos = Vec::new();
    let mut a = Args {
        db: PathBuf::new(),
        url: String::new(),
        interval: Duration::from_millis(1000),
        checkpoint_frames: 1000,
        holder: format!("replicate-{}", std::process::id()),
        lease_ttl_ms: 30_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| anyhow!("{name} needs a value"));
        let number = |v: String, name: &str| {
            v.parse::<u64>()
                .map_err(|_| anyhow!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            "--interval-ms" => {
                a.interval = Duration::from_millis(number(value(&arg)?, &arg)?.max(1))
            }
            "--checkpoint-frames" => a.checkpoint_frames = number(value(&arg)?, &arg)?.max(1),
            "--holder" => a.holder = value(&arg)?,
            "--lease-ttl-ms" => {
                a.lease_ttl_ms = number(value(&arg)?, &arg)?.clamp(1000, 1 << 40) as i64
            }
            s if s.starts_with("--") => bail!("unknown option {s}\n{USAGE}"),
            _ => pos.push(arg),
        }
    }
    let [db, url] = <[String; 2]>::try_from(pos).map_err(|_| anyhow!("{USAGE}"))?;
    a.db = PathBuf::from(db);
    a.url = url;
    Ok(a)
}

/// How far shipping got: the next WAL byte to read, in the WAL with this
/// header (`None`: there was no WAL), and the running checksum there.
#[derive(Debug, Clone, Copy)]
struct Position {
    header: Option<WalHeader>,
    offset: u64,
    checksum: [u32; 2],
}

/// A full image of the database, encoded, not yet uploaded.
struct Image {
    txid: TxId,
    bytes: Vec<u8>,
    timestamp: i64,
    pages: u32,
    /// Where shipping stands once it is uploaded.
    pos: Position,
}

struct Replicator {
    /// The database file, open for our whole life: closing any descriptor
    /// of it would drop the POSIX locks SQLite holds on it for this
    /// process (its shared lock, which keeps other connections from
    /// checkpointing and deleting the WAL when they close).
    db_file: File,
    wal_path: PathBuf,
    /// The WAL index (`-shm`), open for our whole life like `db_file`:
    /// closing a descriptor of it would drop the locks SQLite holds on it
    /// for this process, our read lock among them.
    shm_file: File,
    /// Holds the read transaction that pins the WAL.
    reader: Connection,
    /// Takes SQLite's write lock while we snapshot, catch up or checkpoint.
    control: Connection,
    bucket: Bucket,
    loc: DbLocation,
    lease: Lease,
    pos: Option<Position>,
    next_txid: TxId,
    /// The read transaction was begun under the write lock with everything
    /// shipped (see the module docs): a WAL restart since loses nothing.
    pinned: bool,
    frames_since_checkpoint: u64,
    checkpoint_frames: u64,
}

fn open(db: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("opening {}", db.display()))?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

/// Reads `path` whole (empty when it does not exist).
fn read_all(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r.with_context(|| format!("reading {}", path.display())),
    }
}

/// Whether `h` is the WAL SQLite starts after restarting `prev`.
fn follows(h: &WalHeader, prev: &WalHeader) -> bool {
    h.checkpoint_seq == prev.checkpoint_seq.wrapping_add(1) && h.salt1 == prev.salt1.wrapping_add(1)
}

impl Replicator {
    /// Where the transactions SQLite has published end in the WAL `h`: the
    /// index's last frame when it names `h`'s salts, the header's end when
    /// it names other salts (a restarted WAL none of whose transactions
    /// committed). `None` when the index cannot be read consistently (a
    /// writer is updating it): try again.
    fn published_end(&self, h: &WalHeader) -> Option<u64> {
        let mut b = [0u8; SHM_HEADER_SIZE];
        self.shm_file.read_exact_at(&mut b, 0).ok()?;
        let s = ShmHeader::parse(&b).ok()?;
        Some(if (s.salt1, s.salt2) == (h.salt1, h.salt2) {
            WAL_HEADER_SIZE as u64 + u64::from(s.max_frame) * h.frame_size() as u64
        } else {
            WAL_HEADER_SIZE as u64
        })
    }

    fn end_read(&mut self) -> Result<()> {
        if !self.reader.is_autocommit() {
            self.reader.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Begins the read transaction that pins the WAL (ending any before).
    fn begin_read(&mut self) -> Result<()> {
        self.end_read()?;
        self.reader.execute_batch("BEGIN")?;
        // A read begins the transaction's snapshot (and its WAL read lock).
        self.reader
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .context("beginning the read transaction")?;
        Ok(())
    }

    /// One poll: ship what was committed, snapshot if the position is
    /// lost, checkpoint when the WAL is long enough.
    async fn step(&mut self, may_checkpoint: bool) -> Result<()> {
        self.lease.check().await?;
        if !self.pinned || !self.sync().await? {
            return self.drain(false).await;
        }
        if may_checkpoint && self.frames_since_checkpoint >= self.checkpoint_frames {
            self.drain(true).await?;
        }
        Ok(())
    }

    /// Ships everything and begins the read transaction again under the
    /// write lock (optionally checkpointing first). Writers wait only for
    /// what was committed since the catch-up before it, or for a full
    /// image to be read into memory; the image is uploaded after.
    async fn drain(&mut self, checkpoint: bool) -> Result<()> {
        if self.pos.is_none() {
            self.pos = self.find_position().await?;
        }
        if self.pos.is_some() {
            // A lost position is found again below.
            self.sync().await?;
        }
        self.control
            .execute_batch("BEGIN IMMEDIATE")
            .context("taking the write lock")?;
        let r = self.drain_locked(checkpoint).await;
        self.control.execute_batch("ROLLBACK")?;
        let Some(image) = r? else { return Ok(()) };
        // Pinned since the lock: nothing after the image can be lost.
        if let Err(e) = self.put(image.txid, image.bytes, image.timestamp).await {
            (self.pos, self.pinned) = (None, false); // start over
            return Err(e);
        }
        eprintln!(
            "shipped txid={} snapshot pages={} wal_offset={}",
            image.txid, image.pages, image.pos.offset
        );
        self.pos = Some(image.pos);
        self.next_txid = TxId(image.txid.0 + 1);
        Ok(())
    }

    async fn drain_locked(&mut self, checkpoint: bool) -> Result<Option<Image>> {
        let image = match self.pos.is_some() && self.sync().await? {
            true => None,
            false => Some(self.snapshot()?),
        };
        // Everything committed is shipped (or in `image`); writers wait.
        self.pinned = false;
        if checkpoint {
            self.end_read()?;
            let (busy, log, done): (i64, i64, i64) =
                self.reader
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
            eprintln!("checkpoint busy={busy} wal_frames={log} checkpointed={done}");
            self.frames_since_checkpoint = 0;
        }
        self.begin_read()?;
        self.pinned = true;
        Ok(image)
    }

    /// The position the bucket says we reached, if the WAL still holds it.
    async fn find_position(&mut self) -> Result<Option<Position>> {
        let (catalog, _) = self.bucket.catalog(&self.loc.db).await?;
        let Some(last) = catalog.iter().max_by_key(|o| o.max_txid) else {
            self.next_txid = TxId(1);
            return Ok(None);
        };
        self.next_txid = TxId(last.max_txid.0 + 1);
        let Some(l0) = catalog
            .iter()
            .find(|o| o.level == 0 && o.max_txid == last.max_txid)
        else {
            return Ok(None);
        };
        let h = self.bucket.read_header(&l0.key).await?;
        let end = (h.wal_offset + h.wal_size) as u64;
        let bytes = read_all(&self.wal_path)?;
        let mut scan = wal::scan(&bytes);
        // Only what SQLite published; under the write lock the index is
        // stable (unreadable: no process has built it yet, trust the WAL).
        if let Some(end) = scan.header.and_then(|h| self.published_end(&h)) {
            scan.transactions.retain(|t| t.end() <= end);
        }
        let found = match scan.header {
            // The last file was shipped with no WAL, and there still is none.
            None if h.wal_offset == 0 => Some(Position {
                header: None,
                offset: 0,
                checksum: [0, 0],
            }),
            Some(wh) if (wh.salt1, wh.salt2) == (h.wal_salt1, h.wal_salt2) => {
                let at = if end == WAL_HEADER_SIZE as u64 {
                    Some(wh.checksum)
                } else {
                    scan.transactions
                        .iter()
                        .find(|t| t.end() == end)
                        .map(|t| t.checksum)
                };
                at.map(|checksum| Position {
                    header: Some(wh),
                    offset: end,
                    checksum,
                })
            }
            _ => None,
        };
        match &found {
            Some(p) => eprintln!(
                "resuming at txid={} wal_offset={}",
                self.next_txid, p.offset
            ),
            None => eprintln!(
                "position of txid={} is no longer in the WAL: shipping a full image",
                last.max_txid
            ),
        }
        Ok(found)
    }

    /// Ships every committed transaction after the position. `false`: the
    /// position is lost (the WAL was replaced while not pinned).
    async fn sync(&mut self) -> Result<bool> {
        let Some(mut pos) = self.pos else {
            return Ok(false);
        };
        let mut f = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self.pinned || pos.header.is_none())
            }
            Err(e) => return Err(e).context(format!("opening {}", self.wal_path.display())),
        };
        let mut head = [0u8; WAL_HEADER_SIZE];
        let header = match f.read_exact(&mut head) {
            Ok(()) => WalHeader::parse(&head).ok(),
            Err(_) => None,
        };
        let h = match (header, pos.header) {
            // No WAL yet, or truncated after a full checkpoint.
            (None, _) => return Ok(self.pinned || pos.header.is_none()),
            (Some(h), Some(p)) if (h.salt1, h.salt2) == (p.salt1, p.salt2) => h,
            (Some(h), prev) if self.pinned && prev.is_none_or(|p| follows(&h, &p)) => {
                eprintln!(
                    "WAL restarted (checkpoint_seq={} salts={:08x}/{:08x}): continuing at txid={}",
                    h.checkpoint_seq, h.salt1, h.salt2, self.next_txid
                );
                pos = Position {
                    header: Some(h),
                    offset: WAL_HEADER_SIZE as u64,
                    checksum: h.checksum,
                };
                self.pos = Some(pos);
                h
            }
            _ => return Ok(false),
        };
        // Only what SQLite published (see the module docs).
        let Some(published) = self.published_end(&h) else {
            return Ok(true);
        };
        // Read from the position to the end, chunk by chunk; keep the bytes
        // of transactions not yet shipped (`buf` starts at WAL offset `base`).
        let mut reader = WalReader::resume(h, pos.offset, pos.checksum)?;
        f.seek(SeekFrom::Start(pos.offset))?;
        let (mut buf, mut base, mut fed) = (Vec::new(), pos.offset, 0usize);
        let mut chunk = vec![0u8; 64 * h.frame_size()];
        let mut ended = false;
        while !ended {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut committed: Vec<Transaction> = Vec::new();
            loop {
                let (used, ev) = reader.read(&buf[fed..])?;
                fed += used;
                match ev {
                    WalEvent::Commit(t) if t.end() > published => {
                        ended = true;
                        break;
                    }
                    WalEvent::Commit(t) => committed.push(t.clone()),
                    WalEvent::NeedMore => break,
                    WalEvent::End(_) => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            for t in &committed {
                self.ship(&h, t, &buf, base).await?;
            }
            if let Some(t) = committed.last() {
                let cut = (t.end() - base) as usize;
                buf.drain(..cut);
                fed -= cut;
                base = t.end();
            }
        }
        Ok(true)
    }

    /// Encodes and uploads one committed transaction (its frames are in
    /// `buf`, which starts at WAL offset `base`).
    async fn ship(&mut self, h: &WalHeader, t: &Transaction, buf: &[u8], base: u64) -> Result<()> {
        let txid = self.next_txid;
        let params = LtxParams {
            txid,
            timestamp: now_ms(),
            pre_apply: None, // NoChecksum, as Litestream writes
            db_pages_before: 0,
        };
        let mut out = Vec::new();
        let done = encode_transaction(
            t,
            h.page_size,
            &params,
            |r, page: &mut [u8]| match r {
                PageRef::Wal(off) => {
                    let i = (off - base) as usize;
                    page.copy_from_slice(&buf[i..i + page.len()]);
                    Ok(())
                }
                // Only asked for when tracking checksums.
                PageRef::Before(p) => Err(anyhow!("page {p} before the transaction")),
            },
            &mut out,
        )
        .map_err(|e| anyhow!("encoding txid={txid}: {e}"))?;
        self.put(txid, out, params.timestamp).await?;
        eprintln!(
            "shipped txid={txid} pages={} commit={} wal_offset={} wal_size={} salts={:08x}/{:08x}",
            done.pages, t.commit, t.offset, t.size, t.salt1, t.salt2
        );
        self.next_txid = TxId(txid.0 + 1);
        self.frames_since_checkpoint += t.frames;
        self.pos = Some(Position {
            header: Some(*h),
            offset: t.end(),
            checksum: t.checksum,
        });
        Ok(())
    }

    /// Every page as of the WAL's last commit, as an L0 file of the next
    /// TXID (a snapshot when it is TXID 1). The caller holds the write
    /// lock: the WAL cannot change, and checkpoints only copy WAL pages
    /// into the database file.
    fn snapshot(&self) -> Result<Image> {
        let bytes = read_all(&self.wal_path)?;
        let mut scan = wal::scan(&bytes);
        // Only what SQLite published; under the write lock the index is
        // stable (unreadable: no process has built it yet, trust the WAL).
        if let Some(end) = scan.header.and_then(|h| self.published_end(&h)) {
            scan.transactions.retain(|t| t.end() <= end);
        }
        let mut db = &self.db_file; // never closed: see `Replicator::db_file`
        let db_len = db.metadata()?.len();
        let ps = match scan.header {
            Some(h) => h.page_size,
            None => {
                let mut head = [0u8; 100];
                db.read_exact(&mut head)
                    .context("the database is empty: nothing to ship yet")?;
                let v = u32::from(u16::from_be_bytes([head[16], head[17]]));
                PageSize::new(if v == 1 { 65536 } else { v })
                    .ok_or_else(|| anyhow!("bad page size {v} in the database header"))?
            }
        };
        let db_pages = u32::try_from(db_len / ps.bytes() as u64)?;
        let mut index = WalIndex::with_db_pages(db_pages);
        for t in &scan.transactions {
            index.apply(t);
        }
        let last = scan.transactions.last();
        let commit = last.map_or(db_pages, |t| t.commit);
        if commit == 0 {
            bail!("the database is empty: nothing to ship yet");
        }
        let txid = self.next_txid;
        let mut h = Header::new(ps, txid, txid);
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        h.commit = commit;
        h.timestamp = now_ms();
        let end = last.map_or(WAL_HEADER_SIZE as u64, Transaction::end);
        if let Some(wh) = scan.header {
            (h.wal_offset, h.wal_size) = (WAL_HEADER_SIZE as i64, end as i64 - 32);
            (h.wal_salt1, h.wal_salt2) = (wh.salt1, wh.salt2);
        }
        let mut out = Vec::new();
        let mut enc = Encoder::new(h, &mut out)?;
        let mut page = vec![0u8; ps.bytes()];
        for pgno in (1..=commit).filter(|&p| p != ps.lock_pgno()) {
            match index.lookup(pgno) {
                PageAt::Wal(off) => {
                    let at = off as usize + WAL_FRAME_HEADER_SIZE;
                    page.copy_from_slice(&bytes[at..at + ps.bytes()]);
                }
                PageAt::File => {
                    db.seek(SeekFrom::Start(u64::from(pgno - 1) * ps.bytes() as u64))?;
                    db.read_exact(&mut page)
                        .with_context(|| format!("reading page {pgno} of the database"))?;
                }
                PageAt::Zeros => page.fill(0),
            }
            enc.write_page(&mut out, pgno, &page)?;
        }
        enc.finish(&mut out, Checksum::ZERO)?;
        Ok(Image {
            txid,
            bytes: out,
            timestamp: h.timestamp,
            pages: commit,
            pos: Position {
                header: scan.header,
                offset: if scan.header.is_some() { end } else { 0 },
                checksum: last.map_or_else(
                    || scan.header.map_or([0, 0], |h| h.checksum),
                    |t| t.checksum,
                ),
            },
        })
    }

    /// One PUT (never overwriting), with the time Litestream reads.
    async fn put(&self, txid: TxId, bytes: Vec<u8>, timestamp: i64) -> Result<()> {
        self.lease.check().await?;
        let key = self.loc.key(0, txid, txid);
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.bucket.time_attributes(timestamp),
            ..Default::default()
        };
        self.bucket
            .store()
            .put_opts(&key.as_str().into(), bytes.into(), opts)
            .await
            .with_context(|| format!("uploading {}", self.bucket.location(&key)))?;
        self.bucket.stamp(&key, timestamp)?;
        Ok(())
    }
}

async fn run(args: Args, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let bucket = Bucket::open(&args.url)?;
    let db = bucket.prefix().to_string();
    // The layout Litestream uses on this store (the bucket's, if it has files).
    let (catalog, _) = bucket.catalog(&db).await?;
    let loc = DbLocation::detect(&catalog).unwrap_or(DbLocation {
        db: db.clone(),
        layout: match args.url.split("://").next() {
            Some("s3" | "s3a") => Layout::HexLevel,
            _ => Layout::LtxDir,
        },
    });
    let lease = loop {
        let key = join(&db, "replicate");
        if let Some(l) = Lease::acquire(&bucket, &key, &args.holder, args.lease_ttl_ms).await? {
            break l;
        }
        eprintln!(
            "another replicator holds the lease of {}: waiting",
            bucket.location(&key)
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return Ok(()),
        }
    };
    let reader = open(&args.db)?;
    let mode: String = reader.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{}: journal mode is {mode}, not WAL", args.db.display());
    }
    let mut wal_path = args.db.clone().into_os_string();
    wal_path.push("-wal");
    let mut shm_path = args.db.clone().into_os_string();
    shm_path.push("-shm");
    let mut r = Replicator {
        db_file: File::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?,
        wal_path: wal_path.into(),
        shm_file: File::open(&shm_path)
            .with_context(|| format!("opening {}", Path::new(&shm_path).display()))?,
        reader,
        control: open(&args.db)?,
        bucket,
        loc,
        lease,
        pos: None,
        next_txid: TxId(1),
        pinned: false,
        frames_since_checkpoint: 0,
        checkpoint_frames: args.checkpoint_frames,
    };
    eprintln!("replicating {} to {}", args.db.display(), args.url);
    while !*stop.borrow() {
        if let Err(e) = r.step(true).await {
            if e.downcast_ref::<ltx_compactor::Error>()
                .is_some_and(|e| e.is_lease_lost())
            {
                return Err(e);
            }
            eprintln!("error: {e:#} (retrying)");
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = stop.changed() => {}
        }
    }
    r.step(false)
        .await
        .context("shipping the last transactions")?;
    eprintln!("stopped at txid={}", TxId(r.next_txid.0 - 1));
    let Replicator {
        lease,
        reader,
        control,
        db_file,
        ..
    } = r;
    lease.release().await?;
    // Not closed: see the module docs.
    std::mem::forget((reader, control, db_file));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        #[cfg(unix)]
        let term = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut s) => s.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = term => {}
            Ok(()) = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    match rt.block_on(run(args, rx)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
