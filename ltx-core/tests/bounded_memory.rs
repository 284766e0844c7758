//! Hostile sizes never exhaust memory: files that claim huge sizes are
//! rejected, by the streaming `Decoder` and by `LtxFile::parse` + `verify`,
//! with a peak allocation (measured by a counting global allocator that
//! applies to this test binary only) of less than 1 MiB beyond the input.
//! Run with `-- --nocapture` to see the measured peaks (reported in
//! `spec/RELIABILITY.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ltx_core::checksum::DbChecksum;
use ltx_core::{Checksum, Decoded, Decoder, Encoder, Header, LtxFile, PageSize, TxId};

/// Counts the bytes currently allocated and the peak since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::SeqCst) + n;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated around it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        CURRENT.fetch_sub(l.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, l, new_size);
        if !q.is_null() {
            // Count the moment both blocks may exist (a moving realloc).
            grew(new_size);
            CURRENT.fetch_sub(l.size(), Ordering::SeqCst);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Measurements must not overlap (the counters are global).
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak bytes allocated by `f` beyond what was allocated before it.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = f();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    (r, peak)
}

const MIB: usize = 1 << 20;
const BOUND: usize = MIB;

/// Streams `b` through a `Decoder` in `chunk`-byte reads; the verdict.
fn stream(b: &[u8], chunk: usize) -> Result<(), String> {
    let mut d = Decoder::new();
    for piece in b.chunks(chunk) {
        let mut input = piece;
        loop {
            let (n, ev) = d.decode(input).map_err(|e| e.to_string())?;
            input = &input[n..];
            if matches!(ev, Decoded::NeedMore | Decoded::Done(_)) {
                break;
            }
        }
        if !input.is_empty() {
            d.decode(input).map_err(|e| e.to_string())?;
        }
    }
    d.finish().map(|_| ()).map_err(|e| e.to_string())
}

fn random_access(b: &[u8]) -> Result<(), String> {
    let f = LtxFile::parse(b).map_err(|e| e.to_string())?;
    f.verify().map(|_| ()).map_err(|e| e.to_string())
}

fn ps(n: u32) -> PageSize {
    PageSize::new(n).unwrap()
}

fn uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An incremental header (TXID 2, checksums tracked) with `commit` pages.
fn incremental(page_size: u32, commit: u32) -> Header {
    let mut h = Header::new(ps(page_size), TxId(2), TxId(2));
    h.commit = commit;
    h.pre_apply_checksum = Checksum(0x8000_0000_0000_1234);
    h
}

/// Index varints (entries, terminator) and the size field, as stored.
fn index(entries: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(p, o, s) in entries {
        uvarint(&mut v, p);
        uvarint(&mut v, o);
        uvarint(&mut v, s);
    }
    v.push(0);
    let n = v.len() as u64;
    v.extend_from_slice(&n.to_be_bytes());
    v
}

fn trailer(v: &mut Vec<u8>) {
    v.extend_from_slice(&0x8000_0000_0000_0001u64.to_be_bytes());
    v.extend_from_slice(&0x8000_0000_0000_0002u64.to_be_bytes());
}

/// A block frame whose size prefix claims `claimed` bytes, followed by
/// `present` junk bytes, then an index that agrees with the claim.
fn huge_frame(page_size: u32, claimed: u32, present: usize) -> Vec<u8> {
    let mut v = incremental(page_size, 10).to_bytes().to_vec();
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&claimed.to_be_bytes());
    v.extend(std::iter::repeat_n(0x55u8, present));
    v.extend_from_slice(&[0; 6]);
    v.extend(index(&[(1, 100, u64::from(claimed) + 10)]));
    trailer(&mut v);
    v
}

/// A valid file: `pages` pages of a `page_size` database, encoded properly.
fn valid_file(page_size: u32, snapshot: bool, pages: &[u32], commit: u32, nochk: bool) -> Vec<u8> {
    let p = ps(page_size);
    let mut h = if snapshot {
        Header::new(p, TxId(1), TxId(1))
    } else {
        incremental(page_size, commit)
    };
    h.commit = commit;
    if nochk {
        h.flags = 2;
        h.pre_apply_checksum = Checksum(0);
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let mut sum = DbChecksum::new(p);
    for &pg in pages {
        let page = vec![pg as u8; page_size as usize];
        enc.write_page(&mut out, pg, &page).unwrap();
        sum.add(pg, &page);
    }
    let post = if nochk {
        Checksum(0)
    } else if snapshot {
        sum.value()
    } else {
        Checksum(0x8000_0000_0000_4321)
    };
    enc.finish(&mut out, post).unwrap();
    out
}

/// Replaces the 8-byte index size field of `f`.
fn with_index_size(mut f: Vec<u8>, v: u64) -> Vec<u8> {
    let at = f.len() - 24;
    f[at..at + 8].copy_from_slice(&v.to_be_bytes());
    f
}

/// Sets the header's commit field.
fn with_commit(mut f: Vec<u8>, commit: u32) -> Vec<u8> {
    f[12..16].copy_from_slice(&commit.to_be_bytes());
    f
}

/// A 64 KiB-page file with no frames whose index holds `n` real (3-byte)
/// entries: `n * 3` bytes of input.
fn real_index_entries(n: usize) -> Vec<u8> {
    let mut v = incremental(65536, u32::MAX).to_bytes().to_vec();
    v.extend_from_slice(&[0; 6]);
    let mut idx = Vec::with_capacity(n * 3 + 9);
    for _ in 0..n {
        idx.extend_from_slice(&[0x01, 0x64, 0x0b]); // page 1 at 100, 11 bytes
    }
    idx.push(0);
    let len = idx.len() as u64;
    v.extend(idx);
    v.extend_from_slice(&len.to_be_bytes());
    trailer(&mut v);
    v
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Whether the file is valid (accepted) despite its claim.
    valid: bool,
}

fn hostile_cases() -> Vec<Case> {
    let small = valid_file(4096, false, &[1, 2, 3], 3, false);
    let len = small.len() as u64;
    vec![
        Case {
            name: "block frame claiming 4 GiB (0xffffffff), 4 KiB pages",
            bytes: huge_frame(4096, u32::MAX, 100),
            valid: false,
        },
        Case {
            name: "block frame claiming 2 GiB (0x80000000), 64 KiB pages",
            bytes: huge_frame(65536, 0x8000_0000, 100),
            valid: false,
        },
        Case {
            name: "block frame claiming 1 MiB + 1, 64 KiB pages",
            bytes: huge_frame(65536, (MIB + 1) as u32, 100),
            valid: false,
        },
        Case {
            name: "index size field u64::MAX",
            bytes: with_index_size(small.clone(), u64::MAX),
            valid: false,
        },
        Case {
            name: "index size field = file length + 1",
            bytes: with_index_size(small.clone(), len + 1),
            valid: false,
        },
        Case {
            name: "index size field 2^40",
            bytes: with_index_size(small.clone(), 1 << 40),
            valid: false,
        },
        Case {
            name: "snapshot with commit 2^32-1 (3 pages present)",
            bytes: with_commit(valid_file(4096, true, &[1, 2, 3], 3, false), u32::MAX),
            valid: false,
        },
        Case {
            name: "snapshot with commit 2^32-1, 64 KiB pages",
            bytes: with_commit(valid_file(65536, true, &[1, 2], 2, false), u32::MAX),
            valid: false,
        },
        Case {
            name: "valid incremental, commit 2^32-1, page 2^32-2",
            bytes: valid_file(512, false, &[1, u32::MAX - 1], u32::MAX, true),
            valid: true,
        },
        Case {
            name: "64 KiB pages, index size claims 3,000,000 entries (9 MB)",
            bytes: with_index_size(valid_file(65536, false, &[1], 1, false), 9_000_001),
            valid: false,
        },
        Case {
            name: "64 KiB pages, index size claims 1,000,000 entries, 1 frame",
            bytes: with_index_size(valid_file(65536, false, &[7], 7, false), 3_000_001),
            valid: false,
        },
    ]
}

fn check_case(c: &Case, bound: usize) -> Vec<String> {
    let mut failures = Vec::new();
    let len = c.bytes.len();
    let mut results = Vec::new();
    for (label, chunk) in [
        ("Decoder, whole input", usize::MAX),
        ("Decoder, 64 KiB reads", 65536),
        ("Decoder, 1-byte reads", 1),
    ] {
        if chunk == 1 && len > 1 << 16 {
            continue;
        }
        let (r, peak) = peak_of(|| stream(&c.bytes, chunk.min(len.max(1))));
        results.push((label, r, peak));
    }
    let (r, peak) = peak_of(|| random_access(&c.bytes));
    results.push(("LtxFile::parse + verify", r, peak));
    for (label, r, peak) in results {
        println!(
            "{:<60} {:>9} B input | {:<24} peak {:>9} B | {}",
            c.name,
            len,
            label,
            peak,
            match &r {
                Ok(()) => "accepted".to_string(),
                Err(e) => format!("rejected: {e}"),
            }
        );
        if r.is_ok() != c.valid {
            failures.push(format!("{}: {label}: verdict {:?}", c.name, r));
        }
        if peak >= bound {
            failures.push(format!(
                "{}: {label}: peak allocation {peak} bytes >= bound {bound} (input {len} bytes)",
                c.name
            ));
        }
    }
    failures
}

#[test]
fn hostile_sizes_are_rejected_with_bounded_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    for c in hostile_cases() {
        failures.extend(check_case(&c, BOUND));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An index that really holds a million entries (3 MB of input) in a file
/// with no frames. The streaming decoder rejects it at the first entry;
/// `LtxFile::parse` must not allocate more than 1 MiB beyond the input
/// either.
#[test]
fn a_million_real_index_entries_are_rejected_with_bounded_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Case {
        name: "64 KiB pages, no frames, 1,000,000 real 3-byte index entries",
        bytes: real_index_entries(1_000_000),
        valid: false,
    };
    let failures = check_case(&c, BOUND);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// As above, but the page block really holds 1 MiB (of junk), so up to
/// 1 MiB / 7 index entries pass the "what the block can hold" limit; the
/// entries are all stored before the first one is compared with the
/// layout.
#[test]
fn index_entries_filling_a_junk_page_block_are_rejected_with_bounded_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let block = MIB;
    let n = block / 7;
    let mut v = incremental(65536, u32::MAX).to_bytes().to_vec();
    v.extend(std::iter::repeat_n(0x55u8, block));
    v.extend_from_slice(&[0; 6]);
    let mut idx = Vec::with_capacity(n * 3 + 9);
    for _ in 0..n {
        idx.extend_from_slice(&[0x01, 0x64, 0x0b]);
    }
    idx.push(0);
    let len = idx.len() as u64;
    v.extend(idx);
    v.extend_from_slice(&len.to_be_bytes());
    trailer(&mut v);
    let c = Case {
        name: "1 MiB junk page block, 149,796 real 3-byte index entries",
        bytes: v,
        valid: false,
    };
    let failures = check_case(&c, BOUND);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
