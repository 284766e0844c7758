//! The WAL reader on hand-built WALs, one test per validity rule, split
//! independence, and WAL → LTX chains against a model database (proptest).

mod common;

use ltx_core::checksum::database_checksum;
use ltx_core::wal::{
    self, checksum, ByteOrder, HeaderProblem, WalBuilder, WalEndReason, WalEvent, WalHeader,
    WalReader, WAL_VERSION,
};
use ltx_core::{ErrorKind, LtxFile, PageSize, TxId};
use proptest::prelude::*;

fn ps(n: u32) -> PageSize {
    PageSize::new(n).unwrap()
}

fn page(n: usize, seed: u32) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(97)) as u8
        })
        .collect()
}

/// Two committed transactions of 512-byte pages (pages 1,2 then 2,3,2),
/// then `tail` uncommitted frames.
fn two_txns(order: ByteOrder, tail: usize) -> (Vec<u8>, WalBuilder) {
    let mut w = Vec::new();
    let mut b = WalBuilder::new(ps(512), order, 4, 0x1111, 0x2222, &mut w);
    b.frame(&mut w, 1, 0, &page(512, 1));
    b.frame(&mut w, 2, 2, &page(512, 2));
    b.frame(&mut w, 2, 0, &page(512, 3));
    b.frame(&mut w, 3, 0, &page(512, 4));
    b.frame(&mut w, 2, 3, &page(512, 5));
    for i in 0..tail {
        b.frame(&mut w, 4, 0, &page(512, 10 + i as u32));
    }
    (w, b)
}

const FRAME: u64 = 24 + 512;

#[test]
fn valid_wal_transactions_and_last_frame_wins() {
    let (w, _) = two_txns(ByteOrder::Little, 0);
    let s = wal::scan(&w);
    let h = s.header.unwrap();
    assert_eq!(
        (h.byte_order, h.checkpoint_seq, h.salt1, h.salt2),
        (ByteOrder::Little, 4, 0x1111, 0x2222)
    );
    assert_eq!(s.transactions.len(), 2);
    let t = &s.transactions[1];
    assert_eq!(
        (t.index, t.offset, t.size, t.frames, t.commit),
        (1, 32 + 2 * FRAME, 3 * FRAME, 3, 3)
    );
    // Page 2's last frame (the commit frame) wins over the earlier one.
    let pages: Vec<(u32, u64)> = t.pages.iter().map(|p| (p.pgno, p.offset)).collect();
    assert_eq!(pages, vec![(2, 32 + 4 * FRAME), (3, 32 + 3 * FRAME)]);
    assert_eq!(s.end.reason, WalEndReason::EndOfInput);
    assert_eq!(
        (s.end.valid_end, s.end.at),
        (w.len() as u64, w.len() as u64)
    );
    assert_eq!(
        (
            s.end.transactions,
            s.end.committed_frames,
            s.end.uncommitted_frames
        ),
        (2, 5, 0)
    );
}

#[test]
fn big_endian_magic_selects_big_endian_words() {
    let (w, _) = two_txns(ByteOrder::Big, 0);
    assert_eq!(&w[..4], &[0x37, 0x7f, 0x06, 0x83]);
    let s = wal::scan(&w);
    assert_eq!(s.header.unwrap().byte_order, ByteOrder::Big);
    assert_eq!(s.transactions.len(), 2);
    // The same bytes read as little-endian words: the header checksum fails.
    let mut le = w.clone();
    le[3] = 0x82;
    let s = wal::scan(&le);
    assert!(matches!(
        s.end.reason,
        WalEndReason::Header(HeaderProblem::ChecksumMismatch { .. })
    ));
    assert!(s.transactions.is_empty());
    // And the checksum itself differs by word order.
    let words = [1u8, 0, 0, 0, 2, 0, 0, 0];
    assert_eq!(checksum(ByteOrder::Little, &words, [0, 0]), [1, 3]);
    assert_eq!(
        checksum(ByteOrder::Big, &words, [0, 0]),
        [1 << 24, (2 << 24) + (1 << 24)]
    );
}

#[test]
fn salt_mismatch_ends_the_valid_part() {
    let (mut w, _) = two_txns(ByteOrder::Little, 0);
    // Frame 3 (second transaction's second frame) gets another salt 2.
    let at = (32 + 3 * FRAME) as usize;
    w[at + 15] ^= 1;
    let s = wal::scan(&w);
    assert_eq!(s.transactions.len(), 1);
    assert!(matches!(
        s.end.reason,
        WalEndReason::SaltMismatch {
            expected: [0x1111, 0x2222],
            found: [0x1111, 0x2223]
        }
    ));
    assert_eq!(
        (s.end.at, s.end.valid_end, s.end.uncommitted_frames),
        (at as u64, 32 + 2 * FRAME, 1)
    );
}

#[test]
fn checksum_mismatch_ends_the_valid_part() {
    for (at, byte) in [
        (32 + 2 * FRAME, 24 + 100),
        (32 + 2 * FRAME, 5),
        (32 + 4 * FRAME, 20),
    ] {
        let (mut w, _) = two_txns(ByteOrder::Little, 0);
        w[(at + byte) as usize] ^= 0x40;
        let s = wal::scan(&w);
        assert_eq!(s.transactions.len(), 1, "byte {byte} of frame at {at}");
        assert!(matches!(
            s.end.reason,
            WalEndReason::ChecksumMismatch { .. }
        ));
        assert_eq!((s.end.at, s.end.valid_end), (at, 32 + 2 * FRAME));
    }
    // A later frame with a correct checksum of its own does not count
    // once the chain is broken: everything after the first bad frame is out.
    let (mut w, _) = two_txns(ByteOrder::Little, 0);
    w[(32 + 24 + 7) as usize] ^= 1; // frame 0's page
    let s = wal::scan(&w);
    assert!(s.transactions.is_empty());
    assert_eq!((s.end.at, s.end.valid_end), (32, 32));
}

#[test]
fn zero_pgno_is_invalid() {
    let mut w = Vec::new();
    let mut b = WalBuilder::new(ps(512), ByteOrder::Little, 0, 1, 2, &mut w);
    b.frame(&mut w, 1, 1, &page(512, 1));
    b.frame(&mut w, 0, 1, &page(512, 2)); // checksum valid, page 0
    let s = wal::scan(&w);
    assert_eq!(s.transactions.len(), 1);
    assert_eq!(
        (s.end.reason, s.end.at),
        (WalEndReason::ZeroPgno, 32 + FRAME)
    );
}

#[test]
fn uncommitted_tail_is_not_part_of_the_database() {
    let (w, _) = two_txns(ByteOrder::Little, 3);
    let s = wal::scan(&w);
    assert_eq!(s.transactions.len(), 2);
    assert_eq!(s.end.reason, WalEndReason::EndOfInput);
    assert_eq!(
        (s.end.valid_end, s.end.uncommitted_frames),
        (32 + 5 * FRAME, 3)
    );
    assert!(s.end.to_string().contains("uncommitted tail"), "{}", s.end);
}

#[test]
fn truncated_frame_and_header() {
    let (w, _) = two_txns(ByteOrder::Little, 0);
    for cut in [1u64, 24, 100, FRAME - 1] {
        let len = 32 + 4 * FRAME + cut;
        let s = wal::scan(&w[..len as usize]);
        assert_eq!(s.transactions.len(), 1, "cut {cut}");
        assert_eq!(
            s.end.reason,
            WalEndReason::TruncatedFrame {
                len: cut,
                expected: FRAME
            }
        );
        assert_eq!(
            (s.end.at, s.end.valid_end, s.end.uncommitted_frames),
            (32 + 4 * FRAME, 32 + 2 * FRAME, 2)
        );
    }
    for len in [0usize, 1, 31] {
        let s = wal::scan(&w[..len]);
        assert_eq!(
            s.end.reason,
            WalEndReason::Header(HeaderProblem::Truncated { len: len as u64 })
        );
        assert_eq!(s.end.valid_end, 0);
    }
    // A header alone: valid, no frames.
    let s = wal::scan(&w[..32]);
    assert_eq!(
        (s.end.reason, s.end.valid_end),
        (WalEndReason::EndOfInput, 32)
    );
}

#[test]
fn bad_header_fields_mean_no_valid_frames() {
    let (w, _) = two_txns(ByteOrder::Little, 0);
    // Rewrites header field `i` and fixes the checksum.
    let with = |i: usize, v: u32| {
        let mut w = w.clone();
        w[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        let c = checksum(ByteOrder::Little, &w[..24], [0, 0]);
        w[24..28].copy_from_slice(&c[0].to_be_bytes());
        w[28..32].copy_from_slice(&c[1].to_be_bytes());
        w
    };
    let cases = [
        (with(0, 0x377f0684), HeaderProblem::BadMagic(0x377f0684)),
        (
            with(1, WAL_VERSION + 1),
            HeaderProblem::BadVersion(WAL_VERSION + 1),
        ),
        (with(2, 1000), HeaderProblem::BadPageSize(1000)),
        (with(2, 256), HeaderProblem::BadPageSize(256)),
        (with(2, 131072), HeaderProblem::BadPageSize(131072)),
        // SQLite's database header stores 65536 as 1; its WAL header does
        // not, and a WAL page size below 512 is refused.
        (with(2, 1), HeaderProblem::BadPageSize(1)),
    ];
    for (bytes, problem) in cases {
        let s = wal::scan(&bytes);
        assert_eq!(s.end.reason, WalEndReason::Header(problem));
        assert!(s.transactions.is_empty() && s.header.is_none());
        assert_eq!((s.end.valid_end, s.end.at), (0, 0));
    }
    let mut bad = w.clone();
    bad[30] ^= 1;
    assert!(matches!(
        wal::scan(&bad).end.reason,
        WalEndReason::Header(HeaderProblem::ChecksumMismatch { .. })
    ));
    // The salts are covered by the header checksum too.
    let mut bad = w.clone();
    bad[17] ^= 1;
    assert!(matches!(
        wal::scan(&bad).end.reason,
        WalEndReason::Header(HeaderProblem::ChecksumMismatch { .. })
    ));
}

#[test]
fn page_size_65536() {
    let big = ps(65536);
    let mut w = Vec::new();
    let mut b = WalBuilder::new(big, ByteOrder::Little, 0, 9, 9, &mut w);
    assert_eq!(&w[8..12], &65536u32.to_be_bytes());
    b.frame(&mut w, 1, 0, &page(65536, 1));
    b.frame(&mut w, 2, 2, &page(65536, 2));
    let s = wal::scan(&w);
    assert_eq!(s.header.unwrap().page_size, big);
    assert_eq!(s.transactions.len(), 1);
    assert_eq!(s.transactions[0].size, 2 * (24 + 65536));
    let db = page(65536, 7);
    let image = common::replay(big, &db, &w, true);
    assert_eq!(image, [page(65536, 1), page(65536, 2)].concat());
}

#[test]
fn restarted_wal_stops_at_old_salt_frames() {
    let p = ps(512);
    let mut w = Vec::new();
    let mut b = WalBuilder::new(p, ByteOrder::Little, 0, 100, 200, &mut w);
    for i in 0..6 {
        b.frame(&mut w, i + 1, i + 1, &page(512, i));
    }
    let old = w.clone();
    // Checkpointed; SQLite restarts the WAL at the next write.
    b.restart(&mut w, 0xdead);
    b.frame(&mut w, 1, 0, &page(512, 50));
    b.frame(&mut w, 7, 7, &page(512, 51));
    assert_eq!(w.len(), old.len()); // the old frames 2..6 are still there
    let s = wal::scan(&w);
    let h = s.header.unwrap();
    assert_eq!((h.checkpoint_seq, h.salt1, h.salt2), (1, 101, 0xdead));
    assert_eq!(s.transactions.len(), 1);
    assert_eq!(s.transactions[0].offset, 32);
    assert_eq!(
        s.end.reason,
        WalEndReason::SaltMismatch {
            expected: [101, 0xdead],
            found: [100, 200]
        }
    );
    assert_eq!(
        (s.end.at, s.end.valid_end),
        (32 + 2 * FRAME, 32 + 2 * FRAME)
    );
    // The database file after the checkpoint holds the old WAL's pages.
    let db: Vec<u8> = (0..6).flat_map(|i| page(512, i)).collect();
    let image = common::replay(p, &db, &w, true);
    let mut want = db.clone();
    want[..512].copy_from_slice(&page(512, 50));
    want.extend_from_slice(&page(512, 51));
    assert_eq!(image, want);
}

#[test]
fn tail_scan_reports_frames_after_the_valid_part() {
    let p = ps(512);
    let mut w = Vec::new();
    let mut b = WalBuilder::new(p, ByteOrder::Little, 0, 100, 200, &mut w);
    for i in 0..5 {
        b.frame(&mut w, i + 1, i + 1, &page(512, i));
    }
    b.restart(&mut w, 7);
    b.frame(&mut w, 1, 1, &page(512, 9));
    let mut r = WalReader::new().scan_tail();
    let mut input = &w[..];
    let (mut valid, mut tail, mut ends) = (vec![], vec![], 0);
    loop {
        let (n, ev) = r.read(input).unwrap();
        input = &input[n..];
        match ev {
            WalEvent::NeedMore => break,
            WalEvent::Frame { frame, .. } => valid.push(frame),
            WalEvent::TailFrame { frame, data } => {
                assert_eq!(data.len(), 512);
                tail.push(frame)
            }
            WalEvent::End(e) => {
                ends += 1;
                assert_eq!(e.at, 32 + FRAME);
            }
            _ => {}
        }
    }
    assert_eq!((valid.len(), tail.len(), ends), (1, 4, 1));
    assert!(tail.iter().all(|f| !f.valid && !f.salt_ok));
    // The first old frame does not continue the new chain; the rest
    // continue each other.
    assert!(!tail[0].checksum_ok);
    assert!(tail[1..].iter().all(|f| f.checksum_ok));
    assert_eq!(
        tail.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(r.finish().reason.name(), "salt-mismatch");
}

/// Every event, as comparable values.
fn events(w: &[u8], chunk: usize) -> (Vec<String>, String, u64) {
    let mut r = WalReader::new();
    let mut out = Vec::new();
    'outer: for piece in w.chunks(chunk.max(1)) {
        let mut input = piece;
        loop {
            let (n, ev) = r.read(input).unwrap();
            input = &input[n..];
            match ev {
                WalEvent::NeedMore => break,
                WalEvent::End(e) => {
                    out.push(format!("end {e:?}"));
                    break 'outer;
                }
                WalEvent::Frame { frame, data } => out.push(format!(
                    "{frame:?} {}",
                    data.iter().map(|&b| u32::from(b)).sum::<u32>()
                )),
                WalEvent::Commit(t) => out.push(format!("{t:?}")),
                other => out.push(format!("{other:?}")),
            }
        }
    }
    let end = r.finish();
    (out, format!("{end:?}"), r.position())
}

#[test]
fn split_independence() {
    let (mut w, _) = two_txns(ByteOrder::Big, 2);
    w.truncate(w.len() - 7);
    let whole = events(&w, w.len());
    for chunk in [1, 2, 7, 24, 31, 32, 33, 535, 536, 537, 1000] {
        assert_eq!(events(&w, chunk), whole, "chunk {chunk}");
    }
    // An invalid frame: the reader stops before it at any split.
    let (mut w, _) = two_txns(ByteOrder::Little, 0);
    w[(32 + 3 * FRAME + 9) as usize] ^= 1;
    let whole = events(&w, w.len());
    assert_eq!(whole.2, 32 + 3 * FRAME);
    for chunk in [1, 5, 536, 777] {
        assert_eq!(events(&w, chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn transaction_page_limit_poisons() {
    let (w, _) = two_txns(ByteOrder::Little, 0);
    let mut r = WalReader::new().max_txn_pages(1);
    let mut input = &w[..];
    let err = loop {
        match r.read(input) {
            Ok((n, _)) => input = &input[n..],
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Limit {
                value: 2,
                max: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.offset(), Some(32 + FRAME));
    assert!(matches!(
        r.read(input).unwrap_err().kind(),
        ErrorKind::Poisoned
    ));
}

#[test]
fn header_roundtrip() {
    let b = WalHeader::to_bytes(ByteOrder::Big, ps(1024), 7, 8, 9);
    let h = WalHeader::parse(&b).unwrap();
    assert_eq!(
        (h.page_size.get(), h.checkpoint_seq, h.salt1, h.salt2),
        (1024, 7, 8, 9)
    );
    assert_eq!(h.frame_size(), 24 + 1024);
}

#[test]
fn lock_page_never_in_ltx() {
    // 512-byte pages: the lock page is 2097153. A transaction writing the
    // pages around it (and, against SQLite's habits, the lock page itself).
    let p = ps(512);
    let lock = p.lock_pgno();
    let mut w = Vec::new();
    let mut b = WalBuilder::new(p, ByteOrder::Little, 0, 1, 1, &mut w);
    b.frame(&mut w, lock - 1, 0, &page(512, 1));
    b.frame(&mut w, lock, 0, &page(512, 2));
    b.frame(&mut w, lock + 1, lock + 1, &page(512, 3));
    let s = wal::scan(&w);
    let mut out = Vec::new();
    let params = wal::LtxParams {
        txid: TxId(2),
        timestamp: 0,
        pre_apply: None,
        db_pages_before: lock - 1,
    };
    let done = wal::encode_transaction(
        &s.transactions[0],
        p,
        &params,
        |r, buf| match r {
            wal::PageRef::Wal(off) => common::copy_at(&w, off, buf),
            wal::PageRef::Before(_) => unreachable!("NoChecksum reads no old pages"),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(done.pages, 2);
    let f = LtxFile::parse(&out).unwrap();
    let pgnos: Vec<u32> = f.index().entries().iter().map(|e| e.pgno).collect();
    assert_eq!(pgnos, vec![lock - 1, lock + 1]);
    assert!(f.header().no_checksum());
}

/// A model transaction: pages written (in frame order, repeats allowed)
/// and the commit size.
#[derive(Debug, Clone)]
struct ModelTxn {
    writes: Vec<(u32, u32)>,
    commit: u32,
}

fn model_txns() -> impl Strategy<Value = (u32, Vec<ModelTxn>, bool)> {
    let txn = (
        prop::collection::vec((1u32..24, any::<u32>()), 1..8),
        0u32..6,
        0u8..4,
    )
        .prop_map(|(writes, extra, mode)| ModelTxn {
            // commit: above every write (grow, maybe with holes), or a shrink
            // below some of them.
            commit: match mode {
                0 => writes.iter().map(|w| w.0).max().unwrap() + extra,
                1 => writes.iter().map(|w| w.0).max().unwrap(),
                _ => extra + 1,
            },
            writes,
        });
    (1u32..10, prop::collection::vec(txn, 1..10), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Damaged and cut WALs: no panic, the same events at any split, and
    /// the summary agrees with the transactions.
    #[test]
    fn damaged_wals_split_independent(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..700,
        big_endian in any::<bool>(),
    ) {
        let order = if big_endian { ByteOrder::Big } else { ByteOrder::Little };
        let (mut w, _) = two_txns(order, 2);
        for (i, bit) in flips {
            let i = i.index(w.len());
            w[i] ^= 1 << bit;
        }
        w.truncate(cut.index(w.len() + 1));
        let whole = events(&w, w.len());
        prop_assert_eq!(events(&w, chunk), whole);
        let s = wal::scan(&w);
        prop_assert!(s.end.valid_end <= w.len() as u64);
        prop_assert_eq!(s.end.transactions, s.transactions.len() as u64);
        prop_assert_eq!(s.transactions.iter().map(|t| t.frames).sum::<u64>(), s.end.committed_frames);
        let last_end = s.transactions.last().map(|t| t.end());
        prop_assert_eq!(last_end.unwrap_or(if s.header.is_some() { 32 } else { 0 }), s.end.valid_end);
        for t in &s.transactions {
            prop_assert!(t.pages.windows(2).all(|p| p[0].pgno < p[1].pgno));
        }
    }

    /// Random transactions on a model database: the LTX chain applied to
    /// the database before the WAL equals the model after each transaction,
    /// and every post-apply checksum matches (checked inside `apply`).
    #[test]
    fn wal_to_ltx_matches_the_model((db_pages, txns, big_endian) in model_txns()) {
        let p = ps(512);
        let order = if big_endian { ByteOrder::Big } else { ByteOrder::Little };
        let db: Vec<u8> = (0..db_pages).flat_map(|i| page(512, 1000 + i)).collect();
        let mut model = db.clone();
        let mut w = Vec::new();
        let mut b = WalBuilder::new(p, order, 0, 3, 4, &mut w);
        let mut states = Vec::new();
        for t in &txns {
            for (i, &(pgno, seed)) in t.writes.iter().enumerate() {
                let last = i + 1 == t.writes.len();
                let data = page(512, seed);
                b.frame(&mut w, pgno, if last { t.commit } else { 0 }, &data);
                let off = (pgno as usize - 1) * 512;
                if model.len() < off + 512 {
                    model.resize(off + 512, 0);
                }
                model[off..off + 512].copy_from_slice(&data);
            }
            model.resize(t.commit as usize * 512, 0);
            states.push(model.clone());
        }
        for checksums in [true, false] {
            let s = wal::scan(&w);
            prop_assert_eq!(s.transactions.len(), txns.len());
            let files = common::encode_chain(p, &db, &w, &s, checksums);
            let mut image = db.clone();
            for (f, want) in files.iter().zip(&states) {
                let h = common::apply(&mut image, f);
                prop_assert_eq!(&image, want);
                if checksums {
                    let post = LtxFile::parse(f).unwrap().trailer().post_apply_checksum;
                    let now = database_checksum(p, &image);
                    prop_assert!(post == now || (now.0 == 0 && post.0 == 1 << 63));
                } else {
                    prop_assert!(h.no_checksum());
                }
            }
        }
    }
}

#[test]
fn a_huge_claimed_commit_costs_nothing() {
    // A valid frame claiming a database of 4 billion pages: the checksum of
    // the zero pages it grows by is computed in constant time.
    let p = ps(512);
    let mut w = Vec::new();
    let mut b = WalBuilder::new(p, ByteOrder::Little, 0, 1, 1, &mut w);
    b.frame(&mut w, 1, 4_000_000_000, &page(512, 1));
    let s = wal::scan(&w);
    let db = page(512, 2);
    let params = wal::LtxParams {
        txid: TxId(2),
        timestamp: 0,
        pre_apply: Some(database_checksum(p, &db)),
        db_pages_before: 1,
    };
    let t = std::time::Instant::now();
    let mut out = Vec::new();
    let done = wal::encode_transaction(
        &s.transactions[0],
        p,
        &params,
        |r, buf| match r {
            wal::PageRef::Wal(off) => common::copy_at(&w, off, buf),
            wal::PageRef::Before(_) => common::copy_at(&db, 0, buf),
        },
        &mut out,
    )
    .unwrap();
    assert!(t.elapsed().as_secs() < 5);
    assert_eq!(done.header.commit, 4_000_000_000);
    assert!(done.db_checksum.unwrap().has_flag());
    LtxFile::parse(&out).unwrap().verify().unwrap();
}

#[test]
fn resume_continues_and_notices_a_restart() {
    let (w, mut b) = two_txns(ByteOrder::Big, 0);
    let s = wal::scan(&w);
    let h = s.header.unwrap();
    let first = &s.transactions[0];
    let resumed = |w: &[u8], from: u64, sum: [u32; 2]| {
        let mut r = WalReader::resume(h, from, sum).unwrap();
        let mut input = &w[from as usize..];
        let mut txns = Vec::new();
        loop {
            let (n, ev) = r.read(input).unwrap();
            input = &input[n..];
            match ev {
                WalEvent::Commit(t) => txns.push(t.clone()),
                WalEvent::NeedMore | WalEvent::End(_) => break,
                _ => {}
            }
        }
        (txns, r.finish())
    };
    let (txns, end) = resumed(&w, first.end(), first.checksum);
    assert_eq!(txns.len(), 1);
    let mut second = s.transactions[1].clone();
    second.index = 0;
    assert_eq!(txns[0], second);
    assert_eq!(
        (end.valid_end, end.reason),
        (w.len() as u64, WalEndReason::EndOfInput)
    );
    // From the start, with the header's checksum: everything.
    assert_eq!(resumed(&w, 32, h.checksum).0.len(), 2);
    // A wrong checksum at the resume point: the first frame fails.
    let (txns, end) = resumed(&w, first.end(), [1, 2]);
    assert!(txns.is_empty());
    assert!(matches!(end.reason, WalEndReason::ChecksumMismatch { .. }));
    // Misaligned offsets are refused.
    assert!(WalReader::resume(h, first.end() + 1, first.checksum).is_err());
    assert!(WalReader::resume(h, 0, first.checksum).is_err());
    // SQLite restarted the WAL and wrote more than before: the frame at the
    // resume point carries the new salts.
    let mut w2 = w.clone();
    b.restart(&mut w2, 77);
    for i in 0..6 {
        b.frame(&mut w2, 1, 1, &page(512, 40 + i));
    }
    let (_, end) = resumed(&w2, first.end(), first.checksum);
    assert!(
        matches!(end.reason, WalEndReason::SaltMismatch { .. }),
        "{end}"
    );
}

#[test]
fn tail_scan_after_an_invalid_header_skips_the_rest() {
    let (mut w, _) = two_txns(ByteOrder::Little, 0);
    w[0] = 0;
    let mut r = WalReader::new().scan_tail();
    let mut input = &w[..];
    let mut ends = 0;
    for _ in 0..10 {
        let (n, ev) = r.read(input).unwrap();
        input = &input[n..];
        match ev {
            WalEvent::End(_) => ends += 1,
            WalEvent::NeedMore => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(input.is_empty());
    assert_eq!(ends, 1);
    assert!(matches!(
        r.finish().reason,
        WalEndReason::Header(HeaderProblem::BadMagic(_))
    ));
}
