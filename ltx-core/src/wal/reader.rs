//! The streaming WAL reader: bytes in, frames and committed transactions out.

use std::collections::BTreeMap;
use std::fmt;

use super::{
    checksum, FrameHeader, HeaderProblem, WalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use crate::error::{Error, ErrorKind, Result};
use crate::stream::{stage_take, Src};
use crate::types::Pgno;

/// A frame as read, with what the validity rules found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFrame {
    /// Frame number in the WAL, from 0.
    pub index: u64,
    /// Byte offset of the frame header in the WAL.
    pub offset: u64,
    /// The frame header as stored.
    pub header: FrameHeader,
    /// The salts equal the WAL header's.
    pub salt_ok: bool,
    /// The stored checksum equals the one computed. For frames of the
    /// valid part, and the first frame after it, the computation continues
    /// SQLite's running checksum; for later frames (only reported by
    /// [`WalReader::scan_tail`]) it continues from the previous frame's
    /// stored checksum, so a run of frames left behind by a restart shows
    /// as consistent among themselves.
    pub checksum_ok: bool,
    /// Part of the valid run of frames (SQLite would read it). A valid
    /// frame belongs to the database only once its transaction commits.
    pub valid: bool,
}

impl WalFrame {
    /// Page number.
    pub fn pgno(&self) -> Pgno {
        self.header.pgno
    }
    /// Database size in pages after the transaction on a commit frame, else 0.
    pub fn commit(&self) -> u32 {
        self.header.commit
    }
    /// Whether this is a commit frame (the last frame of a transaction).
    pub fn is_commit(&self) -> bool {
        self.header.commit != 0
    }
    /// Byte offset of the page in the WAL.
    pub fn data_offset(&self) -> u64 {
        self.offset + WAL_FRAME_HEADER_SIZE as u64
    }
}

/// One page of a committed transaction: the last frame the transaction
/// wrote for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnPage {
    /// Page number.
    pub pgno: Pgno,
    /// Byte offset of the frame in the WAL.
    pub offset: u64,
}

impl TxnPage {
    /// Byte offset of the page bytes in the WAL.
    pub fn data_offset(&self) -> u64 {
        self.offset + WAL_FRAME_HEADER_SIZE as u64
    }
}

/// A committed transaction: the frames from the end of the previous commit
/// frame (or offset 32) through its commit frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Transaction number in this WAL, from 0.
    pub index: u64,
    /// Byte offset of its first frame.
    pub offset: u64,
    /// Bytes of its frames (frame headers included).
    pub size: u64,
    /// Number of frames.
    pub frames: u64,
    /// Database size in pages after it (the commit frame's field).
    pub commit: u32,
    /// The WAL header's salts, which every frame carries.
    pub salt1: u32,
    /// Salt 2.
    pub salt2: u32,
    /// The running checksum after its commit frame.
    pub checksum: [u32; 2],
    /// Every page it wrote, ascending, each with its last frame (pages
    /// above `commit` included: the transaction also truncated them away).
    pub pages: Vec<TxnPage>,
}

impl Transaction {
    /// Byte offset just after its commit frame.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// Why the valid part of a WAL ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalEndReason {
    /// The input ended at a frame boundary.
    EndOfInput,
    /// The header is not valid: the WAL has no valid frames.
    Header(HeaderProblem),
    /// A frame's salts differ from the header's (typically a frame left
    /// behind by an earlier use of the WAL before SQLite restarted it).
    SaltMismatch {
        /// The header's salts.
        expected: [u32; 2],
        /// The frame's.
        found: [u32; 2],
    },
    /// A frame for page 0.
    ZeroPgno,
    /// A frame's checksum differs from the running checksum.
    ChecksumMismatch {
        /// Stored in the frame header.
        stored: [u32; 2],
        /// Computed over the WAL up to and including the frame.
        computed: [u32; 2],
    },
    /// The input ends inside a frame.
    TruncatedFrame {
        /// Bytes of the incomplete frame.
        len: u64,
        /// Bytes of a whole frame.
        expected: u64,
    },
}

impl WalEndReason {
    /// A short stable name (`end-of-input`, `bad-header`, `salt-mismatch`,
    /// `zero-pgno`, `checksum-mismatch`, `truncated-frame`).
    pub fn name(&self) -> &'static str {
        match self {
            WalEndReason::EndOfInput => "end-of-input",
            WalEndReason::Header(_) => "bad-header",
            WalEndReason::SaltMismatch { .. } => "salt-mismatch",
            WalEndReason::ZeroPgno => "zero-pgno",
            WalEndReason::ChecksumMismatch { .. } => "checksum-mismatch",
            WalEndReason::TruncatedFrame { .. } => "truncated-frame",
        }
    }
}

impl fmt::Display for WalEndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalEndReason::EndOfInput => write!(f, "end of the WAL"),
            WalEndReason::Header(p) => write!(f, "invalid header: {p}"),
            WalEndReason::SaltMismatch { expected, found } => write!(
                f,
                "frame salts {:08x} {:08x} differ from the header's {:08x} {:08x} (a frame from before a WAL restart?)",
                found[0], found[1], expected[0], expected[1]
            ),
            WalEndReason::ZeroPgno => write!(f, "frame for page 0"),
            WalEndReason::ChecksumMismatch { stored, computed } => write!(
                f,
                "frame checksum {:08x}{:08x}, expected {:08x}{:08x}",
                stored[0], stored[1], computed[0], computed[1]
            ),
            WalEndReason::TruncatedFrame { len, expected } => write!(
                f,
                "incomplete frame: {len} of {expected} bytes"
            ),
        }
    }
}

/// Where the valid part of a WAL ends, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalEnd {
    /// Why reading stopped.
    pub reason: WalEndReason,
    /// Byte offset where it was found: the invalid frame's offset, or the
    /// end of input (0 for a header problem).
    pub at: u64,
    /// Byte offset just after the last commit frame: what the database
    /// holds of the WAL (32 with a valid header and no transaction, 0 with
    /// an invalid header).
    pub valid_end: u64,
    /// Committed transactions.
    pub transactions: u64,
    /// Frames of committed transactions.
    pub committed_frames: u64,
    /// Valid frames after the last commit frame (from `valid_end`): an
    /// uncommitted tail, not part of the database.
    pub uncommitted_frames: u64,
}

impl fmt::Display for WalEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "valid up to byte {} ({} transactions, {} frames)",
            self.valid_end, self.transactions, self.committed_frames
        )?;
        if self.uncommitted_frames > 0 {
            write!(
                f,
                "; then {} valid frames with no commit frame (uncommitted tail, ignored)",
                self.uncommitted_frames
            )?;
        }
        write!(f, "; stopped at byte {}: {}", self.at, self.reason)
    }
}

/// One step of reading.
#[derive(Debug)]
pub enum WalEvent<'a> {
    /// All input was consumed; feed more (or call [`WalReader::finish`]).
    NeedMore,
    /// The header is valid.
    Header(WalHeader),
    /// A valid frame and its page. It belongs to the database only once
    /// its transaction's [`WalEvent::Commit`] follows.
    Frame {
        /// The frame.
        frame: WalFrame,
        /// Its page (exactly one page).
        data: &'a [u8],
    },
    /// A commit frame completed this transaction (reported right after
    /// the commit frame's [`WalEvent::Frame`]).
    Commit(&'a Transaction),
    /// The valid part ended before the input did (an invalid header or
    /// frame). Later calls consume nothing and report it again; with
    /// [`WalReader::scan_tail`] it is reported once and reading goes on
    /// (tail frames, or the rest skipped after an invalid header) until
    /// [`WalEvent::NeedMore`].
    End(WalEnd),
    /// With [`WalReader::scan_tail`]: a frame after the valid part (the
    /// first one is the frame that ended it), for inspection only.
    TailFrame {
        /// The frame (never `valid`).
        frame: WalFrame,
        /// Its page.
        data: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Frames,
    Tail,
    Done,
}

/// Streaming, sans-I/O reader of a SQLite WAL, applying SQLite's validity
/// rules (see the [module docs](super)).
///
/// Call [`WalReader::read`] with the unconsumed rest of your input; each
/// call reports how many bytes it consumed and at most one event. On
/// [`WalEvent::NeedMore`] read more input (at the end of the file, stop);
/// on [`WalEvent::End`] stop. Then [`WalReader::finish`] says where the
/// valid part ends and why. A frame split across calls is staged, so
/// memory is one frame (at most 65,560 bytes) plus the page list of the
/// transaction in progress (16 bytes per distinct page; bound it with
/// [`WalReader::max_txn_pages`]). Invalid content is never an error: it
/// ends the valid part, as in SQLite. The only error is a limit exceeded,
/// after which every call returns [`ErrorKind::Poisoned`].
///
/// ```
/// use ltx_core::wal::{ByteOrder, WalBuilder, WalEvent, WalReader};
/// use ltx_core::PageSize;
/// let mut w = Vec::new();
/// let mut b = WalBuilder::new(PageSize::new(512).unwrap(), ByteOrder::Little, 0, 1, 2, &mut w);
/// b.frame(&mut w, 1, 0, &[1u8; 512]);
/// b.frame(&mut w, 2, 2, &[2u8; 512]);
///
/// let mut r = WalReader::new();
/// let (mut frames, mut commits) = (0, 0);
/// for chunk in w.chunks(100) { // any split works
///     let mut input = chunk;
///     loop {
///         let (n, ev) = r.read(input).unwrap();
///         input = &input[n..];
///         match ev {
///             WalEvent::NeedMore => break,
///             WalEvent::Frame { data, .. } => { assert_eq!(data.len(), 512); frames += 1 }
///             WalEvent::Commit(t) => { assert_eq!((t.offset, t.commit), (32, 2)); commits += 1 }
///             WalEvent::End(_) => unreachable!(),
///             _ => {}
///         }
///     }
/// }
/// let end = r.finish();
/// assert_eq!((frames, commits, end.valid_end), (2, 1, w.len() as u64));
/// ```
#[derive(Debug)]
pub struct WalReader {
    state: State,
    stage: Vec<u8>,
    /// The stage held a unit that the last event borrowed: clear it first.
    stage_used: bool,
    /// Bytes consumed.
    offset: u64,
    header: Option<WalHeader>,
    frame_size: usize,
    sum: [u32; 2],
    frame_index: u64,
    /// The transaction in progress.
    txn_start: u64,
    txn_frames: u64,
    txn_pages: BTreeMap<Pgno, u64>,
    /// The last committed transaction, reported by the pending Commit.
    txn: Transaction,
    commit_pending: bool,
    valid_end: u64,
    transactions: u64,
    committed_frames: u64,
    end: Option<WalEnd>,
    scan_tail: bool,
    tail_seed: [u32; 2],
    max_txn_pages: usize,
    error: Option<Error>,
}

impl Default for WalReader {
    fn default() -> Self {
        WalReader::new()
    }
}

impl WalReader {
    /// A reader at the start of a WAL.
    pub fn new() -> WalReader {
        WalReader {
            state: State::Header,
            stage: Vec::new(),
            stage_used: false,
            offset: 0,
            header: None,
            frame_size: 0,
            sum: [0, 0],
            frame_index: 0,
            txn_start: 0,
            txn_frames: 0,
            txn_pages: BTreeMap::new(),
            txn: Transaction {
                index: 0,
                offset: 0,
                size: 0,
                frames: 0,
                commit: 0,
                salt1: 0,
                salt2: 0,
                checksum: [0, 0],
                pages: Vec::new(),
            },
            commit_pending: false,
            valid_end: 0,
            transactions: 0,
            committed_frames: 0,
            end: None,
            scan_tail: false,
            tail_seed: [0, 0],
            max_txn_pages: usize::MAX,
            error: None,
        }
    }

    /// A reader that continues a WAL at byte `offset` (feed it the bytes
    /// from there): where a committed transaction read before ended
    /// ([`Transaction::end`], with its [`Transaction::checksum`]), or 32 with
    /// the header's checksum. What a replicator keeps across restarts, as
    /// Litestream keeps its WAL offset and salts. Offsets in events stay
    /// absolute; transactions are numbered from 0 again. If SQLite has
    /// restarted the WAL since, the first frame read fails the salt rule
    /// ([`WalEndReason::SaltMismatch`]): read the header again from 0.
    ///
    /// ```
    /// use ltx_core::wal::{self, ByteOrder, WalBuilder, WalEvent, WalReader};
    /// use ltx_core::PageSize;
    /// let mut w = Vec::new();
    /// let mut b = WalBuilder::new(PageSize::new(512).unwrap(), ByteOrder::Little, 0, 1, 2, &mut w);
    /// b.frame(&mut w, 1, 1, &[1u8; 512]);
    /// b.frame(&mut w, 2, 2, &[2u8; 512]);
    /// let s = wal::scan(&w);
    /// let first = &s.transactions[0];
    ///
    /// let mut r = WalReader::resume(s.header.unwrap(), first.end(), first.checksum).unwrap();
    /// let mut input = &w[first.end() as usize..];
    /// loop {
    ///     let (n, ev) = r.read(input).unwrap();
    ///     input = &input[n..];
    ///     match ev {
    ///         WalEvent::Commit(t) => assert_eq!(t.offset, first.end()),
    ///         WalEvent::NeedMore => break,
    ///         _ => {}
    ///     }
    /// }
    /// assert_eq!(r.finish().valid_end, w.len() as u64);
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Misuse`] when `offset` is not 32 plus a whole number of
    /// frames.
    pub fn resume(header: WalHeader, offset: u64, checksum: [u32; 2]) -> Result<WalReader> {
        let fs = header.frame_size() as u64;
        let frames = offset
            .checked_sub(WAL_HEADER_SIZE as u64)
            .filter(|d| d % fs == 0)
            .map(|d| d / fs)
            .ok_or_else(|| {
                Error::new(ErrorKind::Misuse(
                    "a WAL reader resumes at 32 plus a whole number of frames",
                ))
                .at(offset)
            })?;
        let mut r = WalReader::new();
        r.state = State::Frames;
        r.header = Some(header);
        r.frame_size = header.frame_size();
        r.sum = checksum;
        r.offset = offset;
        r.frame_index = frames;
        r.valid_end = offset;
        Ok(r)
    }

    /// Also report the frames after the valid part ([`WalEvent::TailFrame`])
    /// instead of stopping at [`WalEvent::End`] (for dumps): every call
    /// then consumes input until it is all read, and a loop that stops at
    /// [`WalEvent::NeedMore`] ends.
    pub fn scan_tail(mut self) -> Self {
        self.scan_tail = true;
        self
    }

    /// Fails (and poisons the reader) when a transaction writes more than
    /// `max` distinct pages, bounding the memory of its page list.
    pub fn max_txn_pages(mut self, max: usize) -> Self {
        self.max_txn_pages = max;
        self
    }

    /// The header, once read and valid.
    pub fn header(&self) -> Option<&WalHeader> {
        self.header.as_ref()
    }

    /// Bytes consumed so far. After [`WalEvent::End`] (without
    /// `scan_tail`) this is the offset of what ended the valid part.
    pub fn position(&self) -> u64 {
        if self.state == State::Done || self.stage_used {
            self.offset
        } else {
            self.offset + self.stage.len() as u64
        }
    }

    /// The first error, if any.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Reads from `input`; returns the bytes consumed and what was found.
    ///
    /// # Errors
    /// [`ErrorKind::Limit`] when a transaction exceeds
    /// [`WalReader::max_txn_pages`]; then [`ErrorKind::Poisoned`].
    pub fn read<'a>(&'a mut self, input: &'a [u8]) -> Result<(usize, WalEvent<'a>)> {
        if self.error.is_some() {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        if self.stage_used {
            self.stage.clear();
            self.stage_used = false;
        }
        if self.commit_pending {
            self.commit_pending = false;
            return Ok((0, WalEvent::Commit(&self.txn)));
        }
        let n = match self.state {
            State::Done if self.scan_tail => {
                // Nothing left to report (the header was invalid, so there
                // are no frames to scan): the rest is skipped.
                return Ok((input.len(), WalEvent::NeedMore));
            }
            State::Done => {
                let end = self.end.expect("set when done");
                return Ok((0, WalEvent::End(end)));
            }
            State::Header => WAL_HEADER_SIZE,
            State::Frames | State::Tail => self.frame_size,
        };
        let mut used = 0usize;
        let Some(src) = self.take(input, &mut used, n) else {
            return Ok((used, WalEvent::NeedMore));
        };
        let start = self.offset;
        let stage = std::mem::take(&mut self.stage);
        let unit: &[u8] = match src {
            Src::Input(s) => &input[s..s + n],
            Src::Stage => &stage[..n],
        };
        let step = self.unit(start, unit);
        self.stage = stage;
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(e.clone());
                return Err(e);
            }
        };
        match step {
            Step::Consumed(ev) => {
                self.offset += n as u64;
                if let Src::Stage = src {
                    self.stage_used = true;
                }
                let ev = match ev {
                    Ev::Header(h) => WalEvent::Header(h),
                    Ev::Frame(f) | Ev::Tail(f) => {
                        let data = match src {
                            Src::Input(s) => &input[s + WAL_FRAME_HEADER_SIZE..s + n],
                            Src::Stage => &self.stage[WAL_FRAME_HEADER_SIZE..n],
                        };
                        if f.valid {
                            WalEvent::Frame { frame: f, data }
                        } else {
                            WalEvent::TailFrame { frame: f, data }
                        }
                    }
                };
                Ok((used, ev))
            }
            Step::Ended(end) => {
                // The unit is not consumed: it is reread as a tail frame,
                // or stays where the valid part stopped.
                if let Src::Input(_) = src {
                    used -= n;
                }
                Ok((used, WalEvent::End(end)))
            }
        }
    }

    /// Makes `n` bytes available (stage first, then input).
    fn take(&mut self, input: &[u8], used: &mut usize, n: usize) -> Option<Src> {
        stage_take(&mut self.stage, input, used, n)
    }

    fn ended(&mut self, reason: WalEndReason, at: u64) -> WalEnd {
        let end = WalEnd {
            reason,
            at,
            valid_end: self.valid_end,
            transactions: self.transactions,
            committed_frames: self.committed_frames,
            uncommitted_frames: self.txn_frames,
        };
        self.txn_pages.clear();
        self.txn_frames = 0;
        self.end = Some(end);
        end
    }

    /// Handles one unit (the header or a frame) at offset `at`.
    fn unit(&mut self, at: u64, b: &[u8]) -> Result<Step> {
        match self.state {
            State::Header => match WalHeader::parse(b) {
                Ok(h) => {
                    self.header = Some(h);
                    self.frame_size = h.frame_size();
                    self.sum = h.checksum;
                    self.valid_end = WAL_HEADER_SIZE as u64;
                    self.state = State::Frames;
                    Ok(Step::Consumed(Ev::Header(h)))
                }
                Err(p) => {
                    self.state = State::Done;
                    Ok(Step::Ended(self.ended(WalEndReason::Header(p), 0)))
                }
            },
            State::Frames => {
                let h = self.header.expect("header read");
                let fh = FrameHeader::from_bytes(b[..WAL_FRAME_HEADER_SIZE].try_into().unwrap());
                let expected = [h.salt1, h.salt2];
                let found = [fh.salt1, fh.salt2];
                let computed = checksum(
                    h.byte_order,
                    &b[WAL_FRAME_HEADER_SIZE..],
                    checksum(h.byte_order, &b[..8], self.sum),
                );
                let reason = if found != expected {
                    Some(WalEndReason::SaltMismatch { expected, found })
                } else if fh.pgno == 0 {
                    Some(WalEndReason::ZeroPgno)
                } else if computed != fh.checksum {
                    Some(WalEndReason::ChecksumMismatch {
                        stored: fh.checksum,
                        computed,
                    })
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.tail_seed = self.sum;
                    self.state = if self.scan_tail {
                        State::Tail
                    } else {
                        State::Done
                    };
                    return Ok(Step::Ended(self.ended(reason, at)));
                }
                self.sum = computed;
                if self.txn_frames == 0 {
                    self.txn_start = at;
                }
                self.txn_frames += 1;
                self.txn_pages.insert(fh.pgno, at);
                if self.txn_pages.len() > self.max_txn_pages {
                    return Err(Error::new(ErrorKind::Limit {
                        what: "pages written by one WAL transaction",
                        value: self.txn_pages.len() as u64,
                        max: self.max_txn_pages as u64,
                    })
                    .at(at)
                    .page(fh.pgno));
                }
                let frame = WalFrame {
                    index: self.frame_index,
                    offset: at,
                    header: fh,
                    salt_ok: true,
                    checksum_ok: true,
                    valid: true,
                };
                self.frame_index += 1;
                if fh.commit != 0 {
                    let end = at + self.frame_size as u64;
                    self.txn = Transaction {
                        index: self.transactions,
                        offset: self.txn_start,
                        size: end - self.txn_start,
                        frames: self.txn_frames,
                        commit: fh.commit,
                        salt1: h.salt1,
                        salt2: h.salt2,
                        checksum: computed,
                        pages: std::mem::take(&mut self.txn_pages)
                            .into_iter()
                            .map(|(pgno, offset)| TxnPage { pgno, offset })
                            .collect(),
                    };
                    self.transactions += 1;
                    self.committed_frames += self.txn_frames;
                    self.txn_frames = 0;
                    self.valid_end = end;
                    self.commit_pending = true;
                }
                Ok(Step::Consumed(Ev::Frame(frame)))
            }
            State::Tail => {
                let h = self.header.expect("header read");
                let fh = FrameHeader::from_bytes(b[..WAL_FRAME_HEADER_SIZE].try_into().unwrap());
                let computed = checksum(
                    h.byte_order,
                    &b[WAL_FRAME_HEADER_SIZE..],
                    checksum(h.byte_order, &b[..8], self.tail_seed),
                );
                self.tail_seed = fh.checksum;
                let frame = WalFrame {
                    index: self.frame_index,
                    offset: at,
                    header: fh,
                    salt_ok: [fh.salt1, fh.salt2] == [h.salt1, h.salt2],
                    checksum_ok: computed == fh.checksum,
                    valid: false,
                };
                self.frame_index += 1;
                Ok(Step::Consumed(Ev::Tail(frame)))
            }
            State::Done => unreachable!("never called when done"),
        }
    }

    /// Where the valid part of the WAL ends and why, at the end of input
    /// (or as found so far). Input that ends inside the header or a frame
    /// is reported as such.
    pub fn finish(&self) -> WalEnd {
        if let Some(e) = self.end {
            return e;
        }
        let pending = if self.stage_used {
            0
        } else {
            self.stage.len() as u64
        };
        let reason = match self.state {
            State::Header => WalEndReason::Header(HeaderProblem::Truncated { len: pending }),
            _ if pending > 0 => WalEndReason::TruncatedFrame {
                len: pending,
                expected: self.frame_size as u64,
            },
            _ => WalEndReason::EndOfInput,
        };
        WalEnd {
            reason,
            at: if self.state == State::Header {
                0
            } else {
                self.offset
            },
            valid_end: self.valid_end,
            transactions: self.transactions,
            committed_frames: self.committed_frames,
            uncommitted_frames: self.txn_frames,
        }
    }
}

enum Ev {
    Header(WalHeader),
    Frame(WalFrame),
    Tail(WalFrame),
}

enum Step {
    Consumed(Ev),
    Ended(WalEnd),
}

/// A WAL read whole from memory by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalScan {
    /// The header, if valid.
    pub header: Option<WalHeader>,
    /// Every committed transaction, in order.
    pub transactions: Vec<Transaction>,
    /// Where the valid part ends and why.
    pub end: WalEnd,
}

/// Reads a WAL held in memory (a file's bytes, or a memory map) with
/// [`WalReader`], keeping every committed transaction (memory: 16 bytes per
/// page per transaction; page bytes stay in `wal`).
///
/// ```
/// use ltx_core::wal::{self, WalEndReason};
/// let s = wal::scan(&[]);
/// assert!(s.header.is_none() && s.transactions.is_empty());
/// assert!(matches!(s.end.reason, WalEndReason::Header(_)));
/// ```
pub fn scan(wal: &[u8]) -> WalScan {
    let mut r = WalReader::new();
    let mut input = wal;
    let mut transactions = Vec::new();
    let mut header = None;
    while let Ok((n, ev)) = r.read(input) {
        input = &input[n..];
        match ev {
            WalEvent::NeedMore | WalEvent::End(_) => break,
            WalEvent::Header(h) => header = Some(h),
            WalEvent::Commit(t) => transactions.push(t.clone()),
            WalEvent::Frame { .. } | WalEvent::TailFrame { .. } => {}
        }
    }
    WalScan {
        header,
        transactions,
        end: r.finish(),
    }
}
