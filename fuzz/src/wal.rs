//! `wal`: the SQLite WAL reader and WAL → LTX on WALs built from the input
//! (valid checksums, so the fuzzer gets past the header) and then damaged
//! by it, or on the raw input.
//!
//! - the same events and the same end however the input is split, also
//!   with the tail scan; [`wal::scan`] agrees with the summary;
//! - committed transactions end at `valid_end`, their pages ascend;
//! - every committed transaction encodes (checksums tracked from a database
//!   of zero pages, and NoChecksum) into a file that verifies, whose WAL
//!   fields are the transaction's.

use ltx_core::wal::{self, ByteOrder, LtxChain, WalBuilder, WalEvent, WalReader};
use ltx_core::{checksum::database_checksum, LtxFile, PageSize, TxId};

use crate::{fnv1a, Bytes, Rng};

/// Every event as text, and the end, for split-independence checks.
fn events(w: &[u8], rng: &mut Option<Rng>, tail: bool) -> (Vec<String>, String) {
    let mut r = if tail {
        WalReader::new().scan_tail()
    } else {
        WalReader::new()
    };
    let mut out = Vec::new();
    let mut rest = w;
    'outer: while !rest.is_empty() {
        let n = match rng {
            Some(g) => (g.next_u64() % 700) as usize + 1,
            None => rest.len(),
        };
        let (mut input, next) = rest.split_at(n.min(rest.len()));
        rest = next;
        loop {
            let (n, ev) = r.read(input).expect("no limit set");
            input = &input[n..];
            match ev {
                WalEvent::NeedMore => break,
                WalEvent::End(e) => {
                    out.push(format!("end {e:?}"));
                    if !tail {
                        break 'outer;
                    }
                }
                WalEvent::Frame { frame, data } => out.push(format!("{frame:?} {:x}", fnv1a(data))),
                WalEvent::TailFrame { frame, data } => {
                    out.push(format!("tail {frame:?} {:x}", fnv1a(data)))
                }
                WalEvent::Commit(t) => out.push(format!("{t:?}")),
                WalEvent::Header(h) => out.push(format!("{h:?}")),
            }
        }
    }
    (out, format!("{:?}", r.finish()))
}

/// Builds a WAL from the input: page size, byte order, frames (page
/// number, commit, a byte for the page), then damage (bit flips, a cut).
fn build(b: &mut Bytes<'_>) -> Vec<u8> {
    let ps = PageSize::new(512 << (b.u8() % 3)).unwrap();
    let order = if b.u8() & 1 == 0 {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    let mut w = Vec::new();
    let mut wb = WalBuilder::new(ps, order, b.u32(), b.u32(), b.u32(), &mut w);
    let frames = b.u8() % 24;
    for _ in 0..frames {
        let op = b.u8();
        if op == 0xff {
            wb.restart(&mut w, b.u32());
            continue;
        }
        let pgno = u32::from(b.u8() % 16);
        let commit = if op & 1 == 1 {
            u32::from(b.u8() % 20)
        } else {
            0
        };
        let page = vec![b.u8(); ps.bytes()];
        wb.frame(&mut w, pgno, commit, &page);
    }
    for _ in 0..b.u8() % 4 {
        let i = b.u32() as usize % w.len();
        w[i] ^= 1 << (b.u8() % 8);
    }
    let cut = b.u32() as usize % (w.len() + 64);
    w.truncate(cut.max(1));
    w
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let w = if b.u8() & 1 == 1 {
        b.rest().to_vec()
    } else {
        build(&mut b)
    };
    let mut rng = Some(Rng::new(fnv1a(data)));
    for tail in [false, true] {
        let whole = events(&w, &mut None, tail);
        assert_eq!(
            events(&w, &mut rng, tail),
            whole,
            "split (tail scan {tail})"
        );
    }
    let s = wal::scan(&w);
    assert_eq!(s.end.transactions, s.transactions.len() as u64);
    assert!(s.end.valid_end <= w.len() as u64);
    let empty_end = if s.header.is_some() { 32 } else { 0 };
    assert_eq!(
        s.transactions.last().map_or(empty_end, |t| t.end()),
        s.end.valid_end
    );
    let Some(h) = s.header else { return };
    for t in &s.transactions {
        assert!(t.pages.windows(2).all(|p| p[0].pgno < p[1].pgno));
    }
    let ps = h.page_size;
    let db = vec![0u8; 4 * ps.bytes()];
    for checksums in [true, false] {
        let sum = checksums.then(|| database_checksum(ps, &db));
        let mut chain = LtxChain::new(ps, 4, sum, TxId(2));
        for t in &s.transactions {
            let mut out = Vec::new();
            let done = chain.encode(
                t,
                0,
                |off, buf| {
                    let off = off as usize;
                    buf.copy_from_slice(&w[off..off + buf.len()]);
                    Ok::<(), ()>(())
                },
                |_, buf| {
                    buf.fill(0);
                    Ok(())
                },
                &mut out,
            );
            let done =
                done.unwrap_or_else(|e| panic!("transaction {} does not encode: {e:?}", t.index));
            let f = LtxFile::parse(&out).expect("parses");
            f.verify().expect("verifies");
            assert_eq!(done.header.wal_offset as u64, t.offset);
            assert_eq!(done.header.wal_size as u64, t.size);
        }
    }
}
