//! Fuzz target bodies for `ltx-core` and the pure modules of `ltx-compactor`.
//!
//! Each module has a `run(data: &[u8])` that must never panic for any input.
//! The libFuzzer binaries in `fuzz_targets/` are one-line wrappers around
//! them, and `tests/replay.rs` runs them over `corpus/`, `seeds/` and
//! `regressions/` with a plain `cargo test` (no libFuzzer, no nightly).
//!
//! Besides "no panic", every target checks properties (assertions panic,
//! which libFuzzer reports as a crash):
//!
//! - [`decoder`]: the streaming decoder gives the same events and the same
//!   result (error kind, offset, page) however the input is split.
//! - [`random_access`]: `LtxFile::parse` + `read_page` + `verify` agree with
//!   the streaming decoder (differential).
//! - [`page_index`]: `PageIndex::decode` / `parse_tail` / `parse_index`
//!   invariants and encode round-trips.
//! - [`merge`]: merging valid generated chains succeeds when it should, the
//!   output verifies, and each page comes from the newest input holding it.
//! - [`header`]: `Header::decode` / `to_bytes` round-trip; file names too.
//! - [`old_formats`]: the v1/v2 streaming decoders are split-independent,
//!   and `detect` agrees with them.
//! - [`restore_plan`]: `ltx_compactor`'s restore plans are valid chains, hit
//!   their target and are minimal (brute force); `plan_pass` deletes only
//!   catalog files and keeps the latest TXID reproducible.
//! - [`listing`]: `ltx_compactor::catalog` key parsing is canonical and
//!   round-trips; `from_listing`, `DbLocation::detect`, `level_gaps` and
//!   `check_contiguity` hold up on arbitrary keys.
//! - [`wal`]: the SQLite WAL reader is split-independent (also scanning the
//!   tail), its summary agrees with its transactions, and every committed
//!   transaction encodes into an LTX file that verifies.

pub mod decoder;
pub mod header;
pub mod listing;
pub mod merge;
pub mod old_formats;
pub mod page_index;
pub mod random_access;
pub mod restore_plan;
pub mod wal;

/// FNV-1a, 64 bit: a cheap, deterministic digest of page contents.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A byte reader over fuzz input that yields zeros once exhausted, so every
/// input maps to some structured value.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// The next byte, or 0 at the end.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    /// The next `N` bytes (zero-padded).
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for x in &mut a {
            *x = self.u8();
        }
        a
    }
    /// Big-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }
    /// Big-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
    /// Up to `n` of the remaining bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }
    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Split schedules derived from a hash of the input: the workspace's one
/// generator ([`ltx_core::rng::SplitMix64`]).
pub type Rng = ltx_core::rng::SplitMix64;
