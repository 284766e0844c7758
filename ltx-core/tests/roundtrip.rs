//! Property tests: arbitrary headers and page sets → encode → decode → equal,
//! through every reading path; and split independence of the streaming decoder.

use ltx_core::checksum::DbChecksum;
use ltx_core::error::MergeError;
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::{merge_files, MergeOptions};
use ltx_core::rng::SplitMix64;
use ltx_core::{Checksum, Decoded, Decoder, Encoder, ErrorKind, Header, LtxFile, PageSize, TxId};
use proptest::prelude::*;

/// A file description: header and (pgno, page) in ascending order.
#[derive(Debug, Clone)]
struct Spec {
    header: Header,
    pages: Vec<(u32, Vec<u8>)>,
    post_apply: Checksum,
}

fn page_content(seed: u64, size: usize, kind: u8) -> Vec<u8> {
    let mut x = SplitMix64::new(seed);
    let mut v = vec![0u8; size];
    match kind % 3 {
        0 => {} // zeros: compresses to almost nothing
        1 => {
            // random: incompressible
            for b in v.iter_mut() {
                *b = x.next_u64() as u8;
            }
        }
        _ => {
            // structured, like a b-tree page
            for (i, b) in v.iter_mut().enumerate() {
                *b = ((i as u64).wrapping_mul(seed) % 7) as u8;
            }
        }
    }
    v
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        prop::sample::select(vec![512u32, 1024, 4096, 65536]),
        any::<bool>(),   // snapshot
        any::<bool>(),   // no checksum
        1u64..1_000_000, // min txid (for incrementals)
        0u64..5,         // txid span
        1u32..40,        // commit
        prop::collection::vec((any::<bool>(), any::<u64>(), any::<u8>()), 40),
        (
            any::<i64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            0i64..1 << 40,
        ),
    )
        .prop_map(
            |(ps, snapshot, nock, min, span, commit, picks, (ts, pre, s1, s2, node, walo))| {
                let page_size = PageSize::new(ps).unwrap();
                let min = if snapshot { 1 } else { min.max(2) };
                let mut h = Header::new(page_size, TxId(min), TxId(min + span));
                h.commit = commit;
                h.timestamp = ts;
                h.node_id = node;
                if walo > 0 {
                    h.wal_offset = walo;
                    h.wal_size = walo / 3;
                    h.wal_salt1 = s1;
                    h.wal_salt2 = s2;
                }
                if nock {
                    h.flags = HEADER_FLAG_NO_CHECKSUM;
                } else if !snapshot {
                    h.pre_apply_checksum = Checksum(pre | 1 << 63);
                }
                let mut pages = Vec::new();
                let mut sum = DbChecksum::new(page_size);
                for pgno in 1..=commit {
                    let (take, seed, kind) = picks[(pgno - 1) as usize];
                    if snapshot || take {
                        let data = page_content(seed, ps as usize, kind);
                        sum.add(pgno, &data);
                        pages.push((pgno, data));
                    }
                }
                let post_apply = if nock {
                    Checksum(0)
                } else if snapshot {
                    Checksum(sum.value().get() | 1 << 63)
                } else {
                    Checksum(pre | 1 << 63 | 0x55)
                };
                Spec {
                    header: h,
                    pages,
                    post_apply,
                }
            },
        )
}

fn encode(s: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(s.header, &mut out).unwrap();
    for (pgno, data) in &s.pages {
        enc.write_page(&mut out, *pgno, data).unwrap();
    }
    enc.finish(&mut out, s.post_apply).unwrap();
    out
}

/// Events of a streaming decode with the input cut at `cuts`, as comparable values.
fn events(bytes: &[u8], cuts: &[usize]) -> (Vec<String>, Result<u64, ErrorKind>) {
    let mut dec = Decoder::new();
    let mut evs = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < bytes.len()).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    let mut start = 0;
    for end in bounds {
        let mut input = &bytes[start..end];
        start = end;
        loop {
            match dec.decode(input) {
                Err(e) => return (evs, Err(e.kind().clone())),
                Ok((n, ev)) => {
                    input = &input[n..];
                    match ev {
                        Decoded::NeedMore => {
                            assert!(input.is_empty(), "NeedMore with unconsumed input");
                            break;
                        }
                        Decoded::Header(h) => evs.push(format!("header {h:?}")),
                        Decoded::Page { info, data } => evs.push(format!(
                            "page {info:?} {:016x}",
                            ltx_core::checksum::crc64(data)
                        )),
                        Decoded::Done(s) => {
                            evs.push(format!("done {s:?}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    (
        evs,
        dec.finish()
            .map(|s| s.file_size)
            .map_err(|e| e.kind().clone()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_roundtrip(s in spec_strategy()) {
        let bytes = encode(&s);
        // Random access.
        let f = LtxFile::parse(&bytes).unwrap();
        prop_assert_eq!(*f.header(), s.header);
        let sum = f.verify().unwrap();
        prop_assert_eq!(sum.trailer.post_apply_checksum, s.post_apply);
        prop_assert_eq!(sum.page_count as usize, s.pages.len());
        let mut page = vec![0u8; s.header.page_size.bytes()];
        for (pgno, data) in &s.pages {
            prop_assert!(f.read_page(*pgno, &mut page).unwrap());
            prop_assert_eq!(&page, data);
        }
        // Streaming, whole.
        let mut dec = Decoder::new();
        let mut input = &bytes[..];
        let mut got = Vec::new();
        loop {
            let (n, ev) = dec.decode(input).unwrap();
            input = &input[n..];
            match ev {
                Decoded::Header(h) => prop_assert_eq!(h, s.header),
                Decoded::Page { info, data } => got.push((info.pgno, data.to_vec())),
                Decoded::Done(_) => break,
                Decoded::NeedMore => prop_assert!(false, "NeedMore on a whole file"),
            }
        }
        prop_assert_eq!(got, s.pages.clone());
        prop_assert!(dec.finish().is_ok());
    }

    #[test]
    fn split_independence(s in spec_strategy(), cuts in prop::collection::vec(0usize..300_000, 0..6)) {
        let bytes = encode(&s);
        let whole = events(&bytes, &[]);
        prop_assert!(whole.1.is_ok());
        prop_assert_eq!(events(&bytes, &cuts), whole);
    }

    /// A flipped bit is rejected by both readers, unless it sits in LZ4 data
    /// and the block still decodes to the very same page (e.g. a match
    /// offset inside a run of equal bytes): the file checksum covers the
    /// decompressed pages, by design of the format, so such a flip changes
    /// no content. Then both readers must accept and return the original pages.
    #[test]
    fn corruption_is_detected(s in spec_strategy(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode(&s);
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let stream = events(&bytes, &[]);
        let random = LtxFile::parse(&bytes).and_then(|f| f.verify().map(|_| f));
        match (&stream.1, random) {
            (Err(_), Err(_)) => {}
            (Ok(_), Ok(f)) => {
                let original = events(&encode(&s), &[]);
                prop_assert_eq!(&stream.0, &original.0, "bit {} of byte {} flipped: accepted with different content", bit, i);
                let mut page = vec![0u8; s.header.page_size.bytes()];
                for (pgno, data) in &s.pages {
                    prop_assert!(f.read_page(*pgno, &mut page).unwrap());
                    prop_assert_eq!(&page, data);
                }
            }
            (a, b) => prop_assert!(false, "bit {} of byte {} flipped: readers disagree: stream {:?}, random access {:?}", bit, i, a, b.map(|_| ())),
        }
    }
}

/// Feeding a small file at every split point, and one byte at a time, gives
/// the same events as feeding it whole.
#[test]
fn every_split_point() {
    let ps = PageSize::new(512).unwrap();
    let mut h = Header::new(ps, TxId(1), TxId(3));
    h.commit = 4;
    let mut sum = DbChecksum::new(ps);
    let pages: Vec<(u32, Vec<u8>)> = (1..=4)
        .map(|p| (p, page_content(p as u64 * 77, 512, p as u8)))
        .collect();
    for (p, d) in &pages {
        sum.add(*p, d);
    }
    let s = Spec {
        header: h,
        pages,
        post_apply: sum.value(),
    };
    let bytes = encode(&s);
    let whole = events(&bytes, &[]);
    assert!(whole.1.is_ok());
    for cut in 0..=bytes.len() {
        assert_eq!(events(&bytes, &[cut]), whole, "split at {cut}");
    }
    let all: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(events(&bytes, &all), whole);
    // Truncation at every length is an error (never a panic).
    for n in 0..bytes.len() {
        assert!(
            matches!(events(&bytes[..n], &[]).1, Err(ErrorKind::Truncated { .. })),
            "truncated to {n}"
        );
        assert!(LtxFile::parse(&bytes[..n])
            .and_then(|f| f.verify())
            .is_err());
    }
    // One extra byte after the trailer is rejected.
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(
        events(&extra, &[]).1,
        Err(ErrorKind::TrailingBytes { .. })
    ));
    assert!(matches!(
        events(&extra, &[bytes.len()]).1,
        Err(ErrorKind::TrailingBytes { .. })
    ));
}

#[test]
fn decoder_stays_failed() {
    let mut bytes = ltx_core::doc_example_file();
    bytes[0] = b'X';
    let mut dec = Decoder::new();
    assert!(matches!(
        dec.decode(&bytes).unwrap_err().kind(),
        ErrorKind::BadMagic(_)
    ));
    assert!(matches!(
        dec.decode(&bytes).unwrap_err().kind(),
        ErrorKind::Poisoned
    ));
    assert!(matches!(
        dec.finish().unwrap_err().kind(),
        ErrorKind::BadMagic(_)
    ));
}

#[test]
fn encoder_enforces_reference_rules() {
    let ps = PageSize::new(4096).unwrap();
    let page = vec![1u8; 4096];
    let lock = ps.lock_pgno();
    // Incremental file crossing the lock page.
    let mut h = Header::new(ps, TxId(5), TxId(5));
    h.commit = lock + 5;
    h.pre_apply_checksum = Checksum(1 << 63 | 9);
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    enc.write_page(&mut out, 3, &page).unwrap();
    assert!(matches!(
        enc.write_page(&mut out, 3, &page).unwrap_err().kind(),
        ErrorKind::PageOrder(_)
    ));
    assert!(matches!(
        enc.write_page(&mut out, 2, &page).unwrap_err().kind(),
        ErrorKind::PageOrder(_)
    ));
    assert!(matches!(
        enc.write_page(&mut out, lock, &page).unwrap_err().kind(),
        ErrorKind::LockPage(_)
    ));
    assert!(matches!(
        enc.write_page(&mut out, lock + 6, &page)
            .unwrap_err()
            .kind(),
        ErrorKind::PageOutOfRange { .. }
    ));
    assert!(matches!(
        enc.write_page(&mut out, 4, &page[..100])
            .unwrap_err()
            .kind(),
        ErrorKind::BadPageLength { .. }
    ));
    enc.write_page(&mut out, lock + 1, &page).unwrap();
    // Post-apply must carry bit 63 when checksums are tracked.
    assert!(matches!(
        enc.finish(&mut Vec::new(), Checksum(5)).unwrap_err().kind(),
        ErrorKind::BadChecksumFormat { .. }
    ));

    // Snapshots must be contiguous and complete.
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = 3;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    enc.write_page(&mut out, 1, &page).unwrap();
    assert!(matches!(
        enc.write_page(&mut out, 3, &page).unwrap_err().kind(),
        ErrorKind::PageOrder(_)
    ));
    enc.write_page(&mut out, 2, &page).unwrap();
    assert!(matches!(
        enc.finish(&mut out, Checksum(1 << 63)).unwrap_err().kind(),
        ErrorKind::PageOrder(_)
    ));

    // A snapshot spanning the lock page skips it.
    let ps = PageSize::new(65536).unwrap();
    let lock = ps.lock_pgno();
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = lock + 1;
    h.flags = HEADER_FLAG_NO_CHECKSUM;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let zero = vec![0u8; 65536];
    for p in 1..=lock + 1 {
        if p != lock {
            enc.write_page(&mut out, p, &zero).unwrap();
        }
    }
    enc.finish(&mut out, Checksum(0)).unwrap();
    let f = LtxFile::parse(&out).unwrap();
    assert_eq!(f.verify().unwrap().page_count, lock as u64);
    assert!(f.index().get(lock).is_none());

    // Empty database: post-apply exactly 8000000000000000.
    let ps = PageSize::new(4096).unwrap();
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = 0;
    let mut out = Vec::new();
    let enc = Encoder::new(h, &mut out).unwrap();
    assert!(enc.finish(&mut out, Checksum(1 << 63 | 1)).is_err());
    let mut out = Vec::new();
    let enc = Encoder::new(h, &mut out).unwrap();
    enc.finish(&mut out, Checksum(1 << 63)).unwrap();
    LtxFile::parse(&out).unwrap().verify().unwrap();
}

/// Builds a file with the given pages (None = absent) over a base state.
fn incremental(
    ps: PageSize,
    txid: u64,
    commit: u32,
    pages: &[(u32, u8)],
    pre: Checksum,
    post: Checksum,
) -> Vec<u8> {
    let mut h = Header::new(ps, TxId(txid), TxId(txid));
    h.commit = commit;
    h.timestamp = txid as i64 * 1000;
    h.pre_apply_checksum = pre;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    for &(p, fill) in pages {
        enc.write_page(&mut out, p, &vec![fill; ps.bytes()])
            .unwrap();
    }
    enc.finish(&mut out, post).unwrap();
    out
}

#[test]
fn merge_newest_wins_and_drops_pages_above_commit() {
    let ps = PageSize::new(512).unwrap();
    let c = |v: u64| Checksum(1 << 63 | v);
    let a = incremental(ps, 2, 5, &[(1, 1), (2, 1), (5, 1)], c(1), c(2));
    let b = incremental(ps, 3, 6, &[(2, 2), (6, 2)], c(2), c(3));
    let d = incremental(ps, 4, 4, &[(3, 3)], c(3), c(4));
    let files: Vec<LtxFile> = [&a, &b, &d]
        .iter()
        .map(|x| LtxFile::parse(x).unwrap())
        .collect();
    let mut out = Vec::new();
    merge_files(&files, &MergeOptions::default(), &mut out).unwrap();
    let f = LtxFile::parse(&out).unwrap();
    f.verify().unwrap();
    let h = f.header();
    assert_eq!(
        (h.min_txid, h.max_txid, h.commit, h.timestamp),
        (TxId(2), TxId(4), 4, 4000)
    );
    assert_eq!(h.pre_apply_checksum, c(1));
    assert_eq!(f.trailer().post_apply_checksum, c(4));
    let pgnos: Vec<u32> = f.index().entries().iter().map(|e| e.pgno).collect();
    assert_eq!(pgnos, vec![1, 2, 3]);
    let mut page = vec![0u8; 512];
    for (p, fill) in [(1, 1u8), (2, 2), (3, 3)] {
        f.read_page(p, &mut page).unwrap();
        assert_eq!(page, vec![fill; 512], "page {p}");
    }
    // Frames are copied unchanged.
    for e in f.index().entries() {
        let src = if e.pgno == 1 {
            &files[0]
        } else if e.pgno == 2 {
            &files[1]
        } else {
            &files[2]
        };
        assert_eq!(f.frame(e), src.frame(src.index().get(e.pgno).unwrap()));
    }
    // NoChecksum output.
    let mut out = Vec::new();
    merge_files(
        &files,
        &MergeOptions {
            flags: HEADER_FLAG_NO_CHECKSUM,
            allow_gaps: false,
        },
        &mut out,
    )
    .unwrap();
    let f = LtxFile::parse(&out).unwrap();
    f.verify().unwrap();
    assert_eq!(
        (
            f.header().pre_apply_checksum,
            f.trailer().post_apply_checksum
        ),
        (Checksum(0), Checksum(0))
    );
}

#[test]
fn merge_rejects_gaps_overlaps_and_page_size_mismatch() {
    let ps = PageSize::new(512).unwrap();
    let c = |v: u64| Checksum(1 << 63 | v);
    let a = incremental(ps, 2, 1, &[(1, 1)], c(1), c(2));
    let gap = incremental(ps, 4, 1, &[(1, 1)], c(2), c(3));
    let same = incremental(ps, 2, 1, &[(1, 1)], c(1), c(2));
    let other = incremental(PageSize::new(1024).unwrap(), 3, 1, &[(1, 1)], c(2), c(3));
    let fa = LtxFile::parse(&a).unwrap();
    type Is = fn(&MergeError) -> bool;
    let cases: [(&Vec<u8>, &str, Is); 3] = [
        (&gap, "gap", |m| {
            matches!(m, MergeError::Gap { input: 1, .. })
        }),
        (&same, "does not advance", |m| {
            matches!(m, MergeError::NotAdvancing { input: 1, .. })
        }),
        (&other, "page size", |m| {
            matches!(m, MergeError::PageSize { input: 1, .. })
        }),
    ];
    for (bad, what, is) in cases {
        let fb = LtxFile::parse(bad).unwrap();
        let err = merge_files(
            &[fa.clone(), fb.clone()],
            &MergeOptions::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Merge(m) if is(m) && m.to_string().contains(what)),
            "{what}: {err}"
        );
        assert!(err.to_string().starts_with("cannot merge: "), "{err}");
    }
    // Inputs named by the caller.
    let fb = LtxFile::parse(&gap).unwrap();
    let err =
        merge_files(&[fa.clone(), fb], &MergeOptions::default(), &mut Vec::new()).unwrap_err();
    let ErrorKind::Merge(m) = err.kind() else {
        panic!("{err}")
    };
    assert_eq!(
        m.describe(|i| ["a.ltx", "b.ltx"][i].to_string()),
        "TXID gap between a.ltx (0000000000000002-0000000000000002) and b.ltx (0000000000000004-0000000000000004)"
    );
    let fb = LtxFile::parse(&gap).unwrap();
    merge_files(
        &[fa, fb],
        &MergeOptions {
            flags: 0,
            allow_gaps: true,
        },
        &mut Vec::new(),
    )
    .unwrap();
}

#[test]
fn merge_refuses_to_track_checksums_over_a_nochecksum_input() {
    let ps = PageSize::new(512).unwrap();
    let c = |v: u64| Checksum(1 << 63 | v);
    let none = |txid: u64| {
        let mut h = Header::new(ps, TxId(txid), TxId(txid));
        h.commit = 1;
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        let mut out = Vec::new();
        let mut enc = Encoder::new(h, &mut out).unwrap();
        enc.write_page(&mut out, 1, &[txid as u8; 512]).unwrap();
        enc.finish(&mut out, Checksum(0)).unwrap();
        out
    };
    let (t2, t3, n2, n3) = (
        incremental(ps, 2, 1, &[(1, 1)], c(1), c(2)),
        incremental(ps, 3, 1, &[(1, 1)], c(2), c(3)),
        none(2),
        none(3),
    );
    fn parse(b: &[u8]) -> LtxFile<'_> {
        LtxFile::parse(b).unwrap()
    }
    for (files, input, last, which) in [
        ([parse(&t2), parse(&n3)], 1, true, "last"),
        ([parse(&n2), parse(&t3)], 0, false, "first"),
    ] {
        let err = merge_files(&files, &MergeOptions::default(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Merge(MergeError::NoChecksumInput { input, last }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("cannot merge: output tracks checksums but the {which} input has none (use NoChecksum output flags)")
        );
        // With NoChecksum output flags, they merge.
        let opts = MergeOptions {
            flags: HEADER_FLAG_NO_CHECKSUM,
            allow_gaps: false,
        };
        merge_files(&files, &opts, &mut Vec::new()).unwrap();
    }
}

/// A caller that stops as soon as its input is consumed (and only then reads
/// more) sees the whole file, whatever the chunk size: the decoder never
/// holds back bytes it could have processed. Legacy-frame files exercise the
/// scanning path.
#[test]
fn consumed_input_means_nothing_pending() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance/valid");
    for name in [
        "legacy-incremental-db-512.ltx",
        "legacy-snapshot-db-512.ltx",
        "snapshot-db-512.ltx",
    ] {
        let bytes = std::fs::read(root.join(name)).unwrap();
        for chunk in [1usize, 2, 3, 5, 7, 13, 64, 100, 999, 1000, 4096, 65536] {
            let mut dec = Decoder::new();
            for piece in bytes.chunks(chunk) {
                let mut input = piece;
                while !input.is_empty() {
                    let (n, _) = dec
                        .decode(input)
                        .unwrap_or_else(|e| panic!("{name} chunk {chunk}: {e}"));
                    input = &input[n..];
                }
            }
            dec.finish()
                .unwrap_or_else(|e| panic!("{name} chunk {chunk}: {e}"));
        }
    }
}
