//! Domain numbers as newtypes, with the reference's text forms.

use std::fmt;
use std::str::FromStr;

/// Bit 63, set on every stored checksum so that a checksum is never zero.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// Byte offset of SQLite's lock (PENDING_BYTE) page: the page containing it is never stored.
pub const PENDING_BYTE: u64 = 0x4000_0000;

/// A transaction ID. Prints as 16 lower-case hex digits, like the reference.
///
/// ```
/// use ltx_core::TxId;
/// let t: TxId = "00000000000000ff".parse().unwrap();
/// assert_eq!(t.get(), 255);
/// assert_eq!(t.to_string(), "00000000000000ff");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

impl TxId {
    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Parses exactly 16 hex digits (the reference form).
fn parse_hex16(s: &str, what: &'static str) -> Result<u64, ParseError> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError {
            what,
            input: s.to_string(),
        });
    }
    u64::from_str_radix(s, 16).map_err(|_| ParseError {
        what,
        input: s.to_string(),
    })
}

/// A string that is not the expected text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    input: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: expected 16 hex digits",
            self.what, self.input
        )
    }
}
impl std::error::Error for ParseError {}

impl FromStr for TxId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex16(s, "TXID").map(TxId)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A rolling or file checksum (CRC-64/GO-ISO based). Bit 63 is the "present" flag.
///
/// ```
/// use ltx_core::Checksum;
/// let c: Checksum = "8000000000000001".parse().unwrap();
/// assert!(c.has_flag());
/// assert_eq!(c.to_string(), "8000000000000001");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checksum(pub u64);

impl Checksum {
    /// The zero checksum (absent).
    pub const ZERO: Checksum = Checksum(0);
    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
    /// Whether bit 63 is set.
    pub const fn has_flag(self) -> bool {
        self.0 & CHECKSUM_FLAG != 0
    }
    /// Whether the value is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for Checksum {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex16(s, "checksum").map(Checksum)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An LTX layout. Format versions 1, 2 and 3 share the magic `LTX1` and the
/// 100-byte header; what follows differs (see `spec/SPEC.md`). This crate
/// writes only v3; [`crate::old`] reads the older two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FormatVersion {
    /// superfly/ltx up to v0.3.18 (LiteFS, Litestream before v0.5): 4-byte
    /// page headers, raw pages or one LZ4 frame over the page block, no index.
    V1,
    /// superfly/ltx v0.4.x: 4-byte page headers, one LZ4 frame per page, page index.
    V2,
    /// The current layout: 6-byte page headers, LZ4 blocks or frames, page index.
    V3,
}

impl FormatVersion {
    /// Every version, oldest first.
    pub const ALL: [FormatVersion; 3] = [FormatVersion::V1, FormatVersion::V2, FormatVersion::V3];

    /// The version number (1, 2 or 3).
    pub fn number(self) -> u8 {
        match self {
            FormatVersion::V1 => 1,
            FormatVersion::V2 => 2,
            FormatVersion::V3 => 3,
        }
    }

    /// The version with this number.
    pub fn from_number(n: u64) -> Option<FormatVersion> {
        match n {
            1 => Some(FormatVersion::V1),
            2 => Some(FormatVersion::V2),
            3 => Some(FormatVersion::V3),
            _ => None,
        }
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.number())
    }
}

/// A page number (1-based; 0 is never a page).
pub type Pgno = u32;

/// A SQLite page size: a power of two in 512..=65536.
///
/// ```
/// use ltx_core::PageSize;
/// assert_eq!(PageSize::new(4096).unwrap().get(), 4096);
/// assert!(PageSize::new(1000).is_none());
/// assert_eq!(PageSize::new(4096).unwrap().lock_pgno(), 262145);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize(u32);

impl PageSize {
    /// The smallest page size.
    pub const MIN: u32 = 512;
    /// The largest page size.
    pub const MAX: u32 = 65536;

    /// Validates `v`.
    pub const fn new(v: u32) -> Option<PageSize> {
        if v >= Self::MIN && v <= Self::MAX && v.is_power_of_two() {
            Some(PageSize(v))
        } else {
            None
        }
    }
    /// The size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }
    /// The size in bytes as `usize`.
    pub const fn bytes(self) -> usize {
        self.0 as usize
    }
    /// The page number of the SQLite lock page for this page size.
    pub const fn lock_pgno(self) -> Pgno {
        lock_pgno(self.0)
    }
    /// The largest compressed LZ4 block a page of this size can need.
    pub const fn max_block_size(self) -> usize {
        lz4_bound(self.0 as usize)
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The lock page number for `page_size` (`0x40000000 / page_size + 1`).
pub const fn lock_pgno(page_size: u32) -> Pgno {
    (PENDING_BYTE / page_size as u64) as u32 + 1
}

/// The worst-case size of an LZ4 block holding `n` bytes.
pub const fn lz4_bound(n: usize) -> usize {
    n + n / 255 + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_pages() {
        assert_eq!(lock_pgno(512), 2097153);
        assert_eq!(lock_pgno(4096), 262145);
        assert_eq!(lock_pgno(65536), 16385);
    }

    #[test]
    fn page_sizes() {
        for p in [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            assert!(PageSize::new(p).is_some(), "{p}");
        }
        for p in [0, 1, 256, 1000, 4095, 131072, u32::MAX] {
            assert!(PageSize::new(p).is_none(), "{p}");
        }
    }

    #[test]
    fn text_forms() {
        assert!("0x00000000000001".parse::<TxId>().is_err());
        assert!("+000000000000001".parse::<TxId>().is_err());
        assert_eq!(TxId(u64::MAX).to_string(), "ffffffffffffffff");
        assert_eq!(
            "FFFFFFFFFFFFFFFF".parse::<Checksum>().unwrap(),
            Checksum(u64::MAX)
        );
    }
}
