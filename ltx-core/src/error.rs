//! Typed errors carrying what went wrong and where.

use std::fmt;

use crate::types::{Checksum, PageSize, Pgno, TxId};

/// What was wrong. Every variant carries the values that were found, so a
/// message can say what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are named for the values they carry
pub enum ErrorKind {
    /// The first four bytes are not `LTX1`.
    BadMagic([u8; 4]),
    /// Header flag bits other than `0x2` (NoChecksum) are set.
    BadHeaderFlags(u32),
    /// The page size is not a power of two in 512..=65536.
    BadPageSize(u32),
    /// min_txid or max_txid is zero, or min_txid > max_txid.
    BadTxId { min: TxId, max: TxId },
    /// A checksum field breaks the format rules (which field, what it holds, why).
    BadChecksumFormat {
        field: &'static str,
        value: Checksum,
        rule: &'static str,
    },
    /// WAL offset/size/salts are inconsistent.
    BadWalFields(&'static str),
    /// Bytes 80..100 of the header are not all zero.
    ReservedNonZero { offset: u64 },
    /// The input ended while `expected` was being read.
    Truncated { expected: &'static str },
    /// The stored file checksum does not match the content.
    FileChecksumMismatch {
        stored: Checksum,
        computed: Checksum,
    },
    /// An LZ4 payload is corrupt or does not decompress to exactly one page.
    Lz4Corrupt(String),
    /// A compressed size larger than any page could need.
    FrameTooLarge { size: u64, max: u64 },
    /// Unknown page header flag bits, or pgno 0 with non-zero flags.
    BadPageHeader { pgno: u32, flags: u16 },
    /// Frames out of order, duplicated, or a snapshot missing pages.
    PageOrder(String),
    /// A page number above the header's commit.
    PageOutOfRange { pgno: Pgno, commit: u32 },
    /// A frame for the SQLite lock page.
    LockPage(Pgno),
    /// The page index disagrees with the frames, or its size field is wrong.
    PageIndexMismatch(String),
    /// A snapshot's post-apply checksum does not match its pages.
    PostApplyMismatch {
        stored: Checksum,
        computed: Checksum,
    },
    /// Bytes follow the trailer.
    TrailingBytes { extra: u64 },
    /// A page buffer of the wrong length was passed.
    BadPageLength { expected: usize, got: usize },
    /// The decoder or encoder already failed, or is finished.
    Poisoned,
    /// An API was called out of sequence.
    Misuse(&'static str),
    /// Merge inputs do not fit together (page sizes, TXID contiguity, ...).
    Merge(MergeError),
    /// A merge input failed to decode: which one (its position in the list
    /// given) and its error.
    MergeInput { input: usize, error: Box<Error> },
    /// A file name is not `%016x-%016x.ltx`.
    BadFileName(String),
    /// A size or count beyond a limit the caller set (`what` it is).
    Limit {
        what: &'static str,
        value: u64,
        max: u64,
    },
}

impl ErrorKind {
    /// The conformance category this error belongs to (the names used by the
    /// reference vectors' manifest), or `None` for API misuse.
    pub fn category(&self) -> Option<&'static str> {
        use ErrorKind::*;
        Some(match self {
            BadMagic(_) => "bad-magic",
            BadHeaderFlags(_) => "bad-header-flags",
            BadPageSize(_) => "bad-page-size",
            BadTxId { .. } => "bad-txid",
            BadChecksumFormat { .. } => "bad-checksum-format",
            BadWalFields(_) => "bad-wal-fields",
            ReservedNonZero { .. } => "reserved-nonzero",
            Truncated { .. } => "truncated",
            FileChecksumMismatch { .. } => "file-checksum-mismatch",
            Lz4Corrupt(_) | FrameTooLarge { .. } => "lz4-corrupt",
            BadPageHeader { .. } => "bad-page-header",
            PageOrder(_) => "page-order",
            PageOutOfRange { .. } => "page-out-of-range",
            LockPage(_) => "lock-page",
            PageIndexMismatch(_) => "page-index-mismatch",
            PostApplyMismatch { .. } => "post-apply-mismatch",
            TrailingBytes { .. } => "trailing-bytes",
            BadPageLength { .. }
            | Poisoned
            | Misuse(_)
            | Merge(_)
            | MergeInput { .. }
            | BadFileName(_)
            | Limit { .. } => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            BadMagic(m) => write!(f, "bad magic {:02x?}, expected \"LTX1\"", m),
            BadHeaderFlags(v) => write!(f, "invalid header flags 0x{v:08x}, only 0x00000002 (NoChecksum) is defined"),
            BadPageSize(v) => write!(f, "invalid page size {v}, expected a power of two in 512..=65536"),
            BadTxId { min, max } => write!(f, "invalid TXID range {min}-{max}: both must be non-zero and min <= max"),
            BadChecksumFormat { field, value, rule } => write!(f, "invalid {field} checksum {value}: {rule}"),
            BadWalFields(m) => write!(f, "invalid WAL fields: {m}"),
            ReservedNonZero { offset } => write!(f, "reserved header byte at offset {offset} is non-zero, expected all of bytes 80..100 to be zero"),
            Truncated { expected } => write!(f, "file ends early: expected {expected}"),
            FileChecksumMismatch { stored, computed } => write!(f, "file checksum mismatch: trailer says {stored}, content gives {computed}"),
            Lz4Corrupt(m) => write!(f, "corrupt LZ4 payload: {m}"),
            FrameTooLarge { size, max } => write!(f, "compressed size {size} exceeds the maximum {max} for one page"),
            BadPageHeader { pgno, flags } => write!(f, "invalid page header: pgno {pgno}, flags 0x{flags:04x} (expected flags 0x0001 or 0x0000, and pgno 0 only in the end marker)"),
            PageOrder(m) => write!(f, "page order: {m}"),
            PageOutOfRange { pgno, commit } => write!(f, "page {pgno} is above the commit of {commit} pages"),
            LockPage(p) => write!(f, "frame for the SQLite lock page {p}, which must never be stored"),
            PageIndexMismatch(m) => write!(f, "page index: {m}"),
            PostApplyMismatch { stored, computed } => write!(f, "post-apply checksum in trailer is {stored}, but the snapshot's pages give {computed}"),
            TrailingBytes { extra } => write!(f, "{extra} unexpected bytes after the trailer"),
            BadPageLength { expected, got } => write!(f, "page buffer is {got} bytes, expected {expected}"),
            Poisoned => write!(f, "an earlier error stopped this decoder/encoder"),
            Misuse(m) => write!(f, "API misuse: {m}"),
            Merge(m) => write!(f, "cannot merge: {m}"),
            MergeInput { input, error } => write!(f, "cannot merge: input {input}: {error}"),
            BadFileName(n) => write!(f, "invalid LTX file name {n:?}, expected %016x-%016x.ltx"),
            Limit { what, value, max } => write!(f, "{what}: {value} exceeds the limit of {max}"),
        }
    }
}

/// Why inputs cannot be merged ([`crate::merge::plan_merge`]): each
/// variant names the inputs involved by their position in the list given, so
/// a caller can name them its own way ([`MergeError::describe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeError {
    /// The list of inputs is empty.
    NoInputs,
    /// The output flags have bits the format does not define.
    UnknownFlags(u32),
    /// Input `input` has another page size than input `input - 1`.
    PageSize {
        /// The later input.
        input: usize,
        /// Input `input - 1`'s page size.
        prev: PageSize,
        /// Input `input`'s page size.
        page_size: PageSize,
    },
    /// TXIDs are missing between input `input - 1` and input `input` (and
    /// gaps are not allowed).
    Gap {
        /// The later input.
        input: usize,
        /// Input `input - 1`'s TXID range.
        prev: (TxId, TxId),
        /// Input `input`'s TXID range.
        txids: (TxId, TxId),
    },
    /// Input `input` does not end after input `input - 1`.
    NotAdvancing {
        /// The later input.
        input: usize,
        /// Input `input - 1`'s TXID range.
        prev: (TxId, TxId),
        /// Input `input`'s TXID range.
        txids: (TxId, TxId),
    },
    /// The output tracks checksums, but input `input` (the first one, for
    /// an incremental output, or the last one) has the NoChecksum flag: the
    /// output needs the NoChecksum flag too.
    NoChecksumInput {
        /// The input.
        input: usize,
        /// Whether it is the last input (else the first).
        last: bool,
    },
}

impl MergeError {
    /// The message, with each input named by `name` (its position in the
    /// list given): the [`Display`](fmt::Display) form names them `input N`.
    ///
    /// ```
    /// use ltx_core::error::MergeError;
    /// use ltx_core::TxId;
    /// let e = MergeError::Gap { input: 1, prev: (TxId(1), TxId(2)), txids: (TxId(4), TxId(4)) };
    /// let names = ["a.ltx", "b.ltx"];
    /// assert_eq!(
    ///     e.describe(|i| names[i].to_string()),
    ///     "TXID gap between a.ltx (0000000000000001-0000000000000002) and b.ltx (0000000000000004-0000000000000004)"
    /// );
    /// assert!(e.to_string().starts_with("TXID gap between input 0 ("));
    /// ```
    pub fn describe(&self, name: impl Fn(usize) -> String) -> String {
        match self {
            MergeError::NoInputs => "no inputs".into(),
            MergeError::UnknownFlags(flags) => format!("unknown output flags 0x{flags:08x}"),
            MergeError::PageSize {
                input,
                prev,
                page_size,
            } => format!(
                "{} has page size {prev}, {} has {page_size}",
                name(input - 1),
                name(*input)
            ),
            MergeError::Gap { input, prev, txids } => format!(
                "TXID gap between {} ({}-{}) and {} ({}-{})",
                name(input - 1),
                prev.0,
                prev.1,
                name(*input),
                txids.0,
                txids.1
            ),
            MergeError::NotAdvancing { input, prev, txids } => format!(
                "{} ({}-{}) does not advance past {} ({}-{})",
                name(*input),
                txids.0,
                txids.1,
                name(input - 1),
                prev.0,
                prev.1
            ),
            MergeError::NoChecksumInput { last, .. } => format!(
                "output tracks checksums but the {} input has none (use NoChecksum output flags)",
                if *last { "last" } else { "first" }
            ),
        }
    }
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|i| format!("input {i}")))
    }
}

/// An error with where it happened: the byte offset in the file and the page
/// number, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    offset: Option<u64>,
    pgno: Option<u32>,
}

impl Error {
    /// A new error of `kind` with no position.
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            kind,
            offset: None,
            pgno: None,
        }
    }
    /// Sets the byte offset (kept if one is already set).
    pub fn at(mut self, offset: u64) -> Self {
        self.offset.get_or_insert(offset);
        self
    }
    /// Sets the page number (kept if one is already set).
    pub fn page(mut self, pgno: u32) -> Self {
        self.pgno.get_or_insert(pgno);
        self
    }
    pub(crate) fn set_offset(&mut self, offset: u64) {
        self.offset = Some(offset);
    }
    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
    /// Byte offset in the file where the problem was found, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
    /// Page number involved, if known.
    pub fn pgno(&self) -> Option<u32> {
        self.pgno
    }
    /// Shorthand for `self.kind().category()`.
    pub fn category(&self) -> Option<&'static str> {
        self.kind.category()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.offset, self.pgno) {
            (Some(o), Some(p)) => write!(f, "at byte offset {o} (page {p}): {}", self.kind),
            (Some(o), None) => write!(f, "at byte offset {o}: {}", self.kind),
            (None, Some(p)) => write!(f, "page {p}: {}", self.kind),
            (None, None) => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
