//! Writing WAL bytes, as SQLite does (for tests, benchmarks and tools).

use super::{checksum, ByteOrder, FrameHeader, WalHeader, WAL_HEADER_SIZE};
use crate::types::{PageSize, Pgno};

/// Writes a WAL into a buffer the caller owns, with valid checksums.
///
/// The WAL starts at byte 0 of the buffer. Frames are written at the
/// builder's position, overwriting what is there or extending the buffer;
/// [`WalBuilder::restart`] does what SQLite does after a checkpoint: a new
/// header (checkpoint sequence + 1, salt 1 + 1, a new salt 2) and frames
/// written from offset 32 again, the older ones left behind.
///
/// ```
/// use ltx_core::wal::{self, ByteOrder, WalBuilder, WalEndReason};
/// use ltx_core::PageSize;
/// let ps = PageSize::new(512).unwrap();
/// let mut w = Vec::new();
/// let mut b = WalBuilder::new(ps, ByteOrder::Little, 0, 1, 2, &mut w);
/// b.frame(&mut w, 1, 1, &[1u8; 512]);
/// b.frame(&mut w, 1, 1, &[2u8; 512]);
/// b.restart(&mut w, 99);
/// b.frame(&mut w, 1, 1, &[3u8; 512]);
/// let s = wal::scan(&w);
/// assert_eq!(s.transactions.len(), 1); // the second old frame has the old salts
/// assert!(matches!(s.end.reason, WalEndReason::SaltMismatch { .. }));
/// ```
#[derive(Debug, Clone)]
pub struct WalBuilder {
    order: ByteOrder,
    page_size: PageSize,
    seq: u32,
    salt1: u32,
    salt2: u32,
    sum: [u32; 2],
    pos: usize,
}

impl WalBuilder {
    /// Writes a header at the start of `out` (which grows to at least 32 bytes).
    pub fn new(
        page_size: PageSize,
        order: ByteOrder,
        checkpoint_seq: u32,
        salt1: u32,
        salt2: u32,
        out: &mut Vec<u8>,
    ) -> WalBuilder {
        let mut b = WalBuilder {
            order,
            page_size,
            seq: checkpoint_seq,
            salt1,
            salt2,
            sum: [0, 0],
            pos: 0,
        };
        b.write_header(out);
        b
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        let h = WalHeader::to_bytes(self.order, self.page_size, self.seq, self.salt1, self.salt2);
        self.sum = [
            u32::from_be_bytes([h[24], h[25], h[26], h[27]]),
            u32::from_be_bytes([h[28], h[29], h[30], h[31]]),
        ];
        self.pos = 0;
        self.put(out, &h);
    }

    fn put(&mut self, out: &mut Vec<u8>, b: &[u8]) {
        let end = self.pos + b.len();
        if out.len() < end {
            out.resize(end, 0);
        }
        out[self.pos..end].copy_from_slice(b);
        self.pos = end;
    }

    /// Writes a frame for page `pgno` (`commit` = database size in pages on
    /// the last frame of a transaction, else 0); returns its offset.
    ///
    /// # Panics
    /// If `data` is not exactly one page (this is a test and tool helper).
    pub fn frame(&mut self, out: &mut Vec<u8>, pgno: Pgno, commit: u32, data: &[u8]) -> u64 {
        assert_eq!(data.len(), self.page_size.bytes(), "one page");
        let mut fh = FrameHeader {
            pgno,
            commit,
            salt1: self.salt1,
            salt2: self.salt2,
            checksum: [0, 0],
        };
        let head = fh.to_bytes();
        let s = checksum(self.order, &head[..8], self.sum);
        self.sum = checksum(self.order, data, s);
        fh.checksum = self.sum;
        let at = self.pos as u64;
        self.put(out, &fh.to_bytes());
        self.put(out, data);
        at
    }

    /// Restarts the WAL as SQLite does after a complete checkpoint: a new
    /// header with checkpoint sequence + 1, salt 1 + 1 and `salt2`, written
    /// over the old one; the next frame goes to offset 32.
    pub fn restart(&mut self, out: &mut Vec<u8>, salt2: u32) {
        self.seq = self.seq.wrapping_add(1);
        self.salt1 = self.salt1.wrapping_add(1);
        self.salt2 = salt2;
        self.write_header(out);
        debug_assert_eq!(self.pos, WAL_HEADER_SIZE);
    }

    /// The offset the next frame goes to.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// The current salts.
    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }
}
