//! `merge`: builds 1..=4 small valid LTX files (page size 512) from the
//! input, merges them with [`merge_files`], and checks the result.
//!
//! The generator simulates a database across the chain so that checksums
//! are real: each file's pre-apply checksum is the database's before it, its
//! post-apply checksum the database's after it (snapshots: exactly their
//! pages). Files follow every encoder rule (ascending pages, never the lock
//! page, pgno ≤ commit, complete snapshots, checksum formats), so the
//! encoder must accept them and every input must verify.
//!
//! Input bytes (a reader that yields zeros when exhausted):
//!
//! ```text
//! g: bits 0-1 files-1 | bit 2 "inconsistent" (growth pages not rewritten)
//!    | bit 3 output NoChecksum | bit 4 allow_gaps | bit 5 pages around the lock page
//! s: first min TXID = 1 + s % 3 (1 = the chain starts with a snapshot)
//! per file:
//!   f: bits 0-1 TXID step (next, next, gap of one, overlap) | bits 2-3 extra TXIDs
//!      | bit 4 NoChecksum | bit 5 some frames as legacy LZ4 frames | bit 6 WAL fields
//!   c: new commit (keep / grow / shrink / anything up to 16, relative to the base)
//!   m: 2 bytes, bit mask of the pages an incremental file writes
//!   per page: a content byte (fill / copied input / partial / pseudo-random)
//!             and a frame byte (block frame, or a legacy frame variant)
//! ```
//!
//! Checks: `merge_files` succeeds exactly when the inputs chain (TXIDs
//! contiguous or `allow_gaps`, each input advancing the max TXID, checksum
//! flags compatible with the output, a snapshot output complete); then the
//! output parses and verifies (by `LtxFile::verify` and the streaming
//! decoder), has the header the rules give, and holds exactly the pages
//! ≤ the final commit that some input has, each equal to the page from the
//! newest input holding it.

use std::collections::{BTreeMap, BTreeSet};

use ltx_core::checksum::DbChecksum;
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::{merge_files, MergeOptions};
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{decode_frame, Checksum, Encoder, Header, LtxFile, PageSize, Pgno, TxId};

use crate::Bytes;

const PAGE: usize = 512;

/// One generated input file.
#[derive(Debug)]
pub struct Built {
    /// Its header.
    pub header: Header,
    /// The pages it holds.
    pub pages: BTreeMap<Pgno, Vec<u8>>,
    /// The encoded file.
    pub bytes: Vec<u8>,
}

fn page_content(r: &mut Bytes<'_>, salt: u64) -> Vec<u8> {
    let m = r.u8();
    let mut p = vec![0u8; PAGE];
    match m & 3 {
        0 => p.fill(m >> 2),
        1 => {
            let src = r.take(PAGE);
            p[..src.len()].copy_from_slice(src);
        }
        2 => {
            let src = r.take((m >> 2) as usize * 2);
            p[..src.len()].copy_from_slice(src);
        }
        _ => {
            let mut rng = crate::Rng::new(salt ^ u64::from(m) << 32);
            for c in p.chunks_mut(8) {
                c.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
        }
    }
    p
}

/// A legacy frame (page header with flags 0, then one LZ4 frame), in one
/// of the shapes the reference's LZ4 library can write. `v` picks content
/// checksum, block checksums, content size, stored (uncompressed) blocks,
/// and two dependent blocks.
pub fn legacy_frame(pgno: Pgno, page: &[u8], v: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&pgno.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    let content_checksum = v & 1 != 0;
    let block_checksum = v & 2 != 0;
    let content_size = v & 4 != 0;
    let stored = v & 8 != 0;
    let two_blocks = v & 16 != 0;
    out.extend_from_slice(&0x184D_2204u32.to_le_bytes());
    let mut desc = vec![
        0b0100_0000
            | if two_blocks { 0 } else { 0b0010_0000 }
            | u8::from(block_checksum) << 4
            | u8::from(content_size) << 3
            | u8::from(content_checksum) << 2,
        4 << 4,
    ];
    if content_size {
        desc.extend_from_slice(&(page.len() as u64).to_le_bytes());
    }
    let hc = (xxhash_rust::xxh32::xxh32(&desc, 0) >> 8) as u8;
    out.extend_from_slice(&desc);
    out.push(hc);
    let parts: Vec<(&[u8], &[u8])> = if two_blocks {
        let (a, b) = page.split_at(page.len() / 2);
        vec![(a, &[][..]), (b, a)]
    } else {
        vec![(page, &[][..])]
    };
    for (data, dict) in parts {
        let (raw, block) = if stored {
            (data.len() as u32 | 0x8000_0000, data.to_vec())
        } else {
            let b = lz4_flex::block::compress_with_dict(data, dict);
            (b.len() as u32, b)
        };
        out.extend_from_slice(&raw.to_le_bytes());
        out.extend_from_slice(&block);
        if block_checksum {
            out.extend_from_slice(&xxhash_rust::xxh32::xxh32(&block, 0).to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    if content_checksum {
        out.extend_from_slice(&xxhash_rust::xxh32::xxh32(page, 0).to_le_bytes());
    }
}

fn db_checksum(ps: PageSize, db: &BTreeMap<Pgno, Vec<u8>>) -> Checksum {
    let mut s = DbChecksum::new(ps);
    for (p, d) in db {
        s.add(*p, d);
    }
    s.value()
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let ps = PageSize::new(PAGE as u32).unwrap();
    let lock = ps.lock_pgno();
    let mut r = Bytes::new(data);
    let g = r.u8();
    let n_files = 1 + (g & 3) as usize;
    let consistent = g & 0x04 == 0;
    let opts = MergeOptions {
        flags: if g & 0x08 != 0 {
            HEADER_FLAG_NO_CHECKSUM
        } else {
            0
        },
        allow_gaps: g & 0x10 != 0,
    };
    let near_lock = g & 0x20 != 0;
    // Files around the lock page cannot be snapshots (2M pages).
    let first_min = if near_lock {
        2 + u64::from(r.u8() % 2)
    } else {
        1 + u64::from(r.u8() % 3)
    };
    let base: Pgno = if near_lock { lock - 8 } else { 0 };

    // The simulated database (pages above `base` only) and its size.
    let mut db: BTreeMap<Pgno, Vec<u8>> = BTreeMap::new();
    let mut db_commit: Pgno = base;
    let mut prev_max: u64 = first_min - 1;
    let mut files: Vec<Built> = Vec::new();
    let mut scratch = vec![0u8; PAGE];

    for i in 0..n_files {
        let f = r.u8();
        let min = match f & 3 {
            0 | 1 => prev_max + 1,
            2 => prev_max + 2,
            _ => prev_max.max(1),
        };
        let min = if i == 0 { first_min } else { min };
        let max = min + u64::from((f >> 2) & 3);
        let no_checksum = f & 0x10 != 0;
        let legacy = f & 0x20 != 0;
        let snapshot = min == 1;
        let c = r.u8();
        let rel = db_commit - base;
        let commit = base
            + match c >> 6 {
                0 => rel,
                1 => rel + 1 + u32::from(c % 4),
                2 => rel.saturating_sub(u32::from(c % 4)),
                _ => u32::from(c % 17),
            }
            .min(24);
        let mask = u16::from_be_bytes(r.array());

        let mut h = Header::new(ps, TxId(min), TxId(max));
        h.commit = commit;
        h.flags = if no_checksum {
            HEADER_FLAG_NO_CHECKSUM
        } else {
            0
        };
        h.timestamp = i64::from(r.u32() as i32) * 1000;
        h.node_id = u64::from(r.u8());
        if f & 0x40 != 0 {
            h.wal_offset = 32 + i64::from(r.u8()) * (PAGE as i64 + 24);
            h.wal_size = i64::from(r.u8()) * (PAGE as i64 + 24);
            h.wal_salt1 = r.u32();
            h.wal_salt2 = r.u32();
        }
        if !snapshot && !no_checksum {
            let pre = db_checksum(ps, &db);
            h.pre_apply_checksum = if pre.is_zero() {
                Checksum(CHECKSUM_FLAG)
            } else {
                pre
            };
        }

        // Which pages this file writes.
        let pgnos: Vec<Pgno> = (base + 1..=commit)
            .filter(|&p| p != lock)
            .filter(|&p| {
                snapshot
                    || mask & (1 << ((p - base - 1) % 16)) != 0
                    || (consistent && p > db_commit)
            })
            .collect();

        // Apply to the simulated database.
        if snapshot {
            db.clear();
        }
        db.retain(|&p, _| p <= commit);
        let mut pages = BTreeMap::new();
        for &p in &pgnos {
            let content = page_content(&mut r, (i as u64) << 40 | u64::from(p));
            db.insert(p, content.clone());
            pages.insert(p, content);
        }
        db_commit = commit;
        let post = if no_checksum {
            Checksum(0)
        } else {
            let v = db_checksum(ps, &db);
            if v.is_zero() {
                Checksum(CHECKSUM_FLAG)
            } else {
                v
            }
        };

        let mut bytes = Vec::new();
        let mut enc = Encoder::new(h, &mut bytes)
            .unwrap_or_else(|e| panic!("encoder refuses generated header {h:?}: {e}"));
        for (&p, content) in &pages {
            let fb = r.u8();
            if legacy && fb & 0x80 != 0 {
                let mut frame = Vec::new();
                legacy_frame(p, content, fb, &mut frame);
                let d = decode_frame(&frame, ps, &mut scratch).unwrap_or_else(|e| {
                    panic!("generated legacy frame (variant {fb:#x}) rejected: {e}")
                });
                assert_eq!(&scratch, content, "legacy frame round-trip");
                enc.write_frame(&mut bytes, &frame, &d)
                    .unwrap_or_else(|e| panic!("encoder refuses legacy frame for page {p}: {e}"));
            } else {
                enc.write_page(&mut bytes, p, content)
                    .unwrap_or_else(|e| panic!("encoder refuses page {p} of {h:?}: {e}"));
            }
        }
        enc.finish(&mut bytes, post).unwrap_or_else(|e| {
            panic!("encoder refuses to finish {h:?} with post-apply {post}: {e}")
        });
        files.push(Built {
            header: h,
            pages,
            bytes,
        });
        prev_max = max;
    }
    check_merge(&files, &opts, consistent);
}

/// Merges `files` and checks the result against the model.
pub fn check_merge(files: &[Built], opts: &MergeOptions, consistent: bool) {
    let parsed: Vec<LtxFile<'_>> = files
        .iter()
        .map(|b| {
            let f = LtxFile::parse(&b.bytes)
                .unwrap_or_else(|e| panic!("encoder output does not parse: {e}"));
            f.verify()
                .unwrap_or_else(|e| panic!("encoder output does not verify: {e}"));
            f
        })
        .collect();
    let first = &files[0].header;
    let last = &files[files.len() - 1].header;
    let out_no_checksum = opts.flags & HEADER_FLAG_NO_CHECKSUM != 0;
    let out_snapshot = first.min_txid.0 == 1;
    let commit = last.commit;
    let lock = first.page_size.lock_pgno();

    // The model: newest input holding each page <= commit.
    let mut want: BTreeMap<Pgno, &Vec<u8>> = BTreeMap::new();
    for b in files {
        for (p, d) in b.pages.range(..=commit) {
            want.insert(*p, d);
        }
    }
    let chains = files.windows(2).all(|w| {
        let (p, n) = (&w[0].header, &w[1].header);
        (opts.allow_gaps || n.min_txid.0 <= p.max_txid.0 + 1) && n.max_txid > p.max_txid
    });
    let flags_ok =
        out_no_checksum || ((out_snapshot || !first.no_checksum()) && !last.no_checksum());
    let complete =
        !out_snapshot || want.len() as u64 == u64::from(commit) - u64::from(lock <= commit);
    let expect_ok = chains && flags_ok && complete;

    let mut out = Vec::new();
    let res = merge_files(&parsed, opts, &mut out);
    match (&res, expect_ok) {
        (Ok(_), true) | (Err(_), false) => {}
        (Ok(_), false) => panic!(
            "merge succeeded but should fail (chains={chains} flags_ok={flags_ok} complete={complete}); headers {:?}",
            files.iter().map(|f| f.header).collect::<Vec<_>>()
        ),
        (Err(e), true) => panic!(
            "merge failed on inputs that chain: {e}; headers {:?}",
            files.iter().map(|f| f.header).collect::<Vec<_>>()
        ),
    }
    let Ok(trailer) = res else { return };

    let f = LtxFile::parse(&out).unwrap_or_else(|e| panic!("merge output does not parse: {e}"));
    assert_eq!(
        *f.trailer(),
        trailer,
        "returned trailer differs from the written one"
    );
    let h = f.header();
    assert_eq!(h.min_txid, first.min_txid);
    assert_eq!(h.max_txid, last.max_txid);
    assert_eq!(h.commit, commit);
    assert_eq!(h.flags, opts.flags);
    assert_eq!(h.timestamp, last.timestamp);
    assert_eq!(
        (
            h.wal_offset,
            h.wal_size,
            h.wal_salt1,
            h.wal_salt2,
            h.node_id
        ),
        (0, 0, 0, 0, 0)
    );
    let want_pre = if out_snapshot || out_no_checksum {
        Checksum(0)
    } else {
        first.pre_apply_checksum
    };
    assert_eq!(h.pre_apply_checksum, want_pre, "output pre-apply checksum");
    let want_post = if out_no_checksum {
        Checksum(0)
    } else {
        parsed[parsed.len() - 1].trailer().post_apply_checksum
    };
    assert_eq!(
        trailer.post_apply_checksum, want_post,
        "output post-apply checksum"
    );

    // Pages: exactly the model's, with the same contents.
    let got: BTreeSet<Pgno> = f.index().entries().iter().map(|e| e.pgno).collect();
    let exp: BTreeSet<Pgno> = want.keys().copied().collect();
    assert_eq!(got, exp, "output page set");
    let mut page = vec![0u8; PAGE];
    for (p, d) in &want {
        assert!(
            f.read_page(*p, &mut page).expect("read_page"),
            "page {p} missing"
        );
        assert_eq!(&&page, d, "page {p} is not the newest input's");
    }

    // Verification: always, unless an inconsistent chain makes a snapshot's
    // post-apply checksum (taken from the last input) disagree with its pages.
    let verified = f.verify();
    let stream = crate::decoder::decode_whole(&out, false);
    assert_eq!(
        verified.is_ok(),
        stream.is_ok(),
        "merge output: verify() {verified:?} vs decoder {:?}",
        stream.result
    );
    if consistent || !out_snapshot || out_no_checksum {
        verified.unwrap_or_else(|e| panic!("merge output does not verify: {e}"));
    }
}
