//! Corruption sweep over every valid LTX file of `testdata/conformance`
//! (kinds "valid", every chain step file, every compaction output): bit
//! flips, byte deletions, byte insertions and truncation at every length,
//! each checked with BOTH the streaming [`Decoder`] and
//! `LtxFile::parse(..).verify()`. A panic counts as a failure.
//!
//! A mutated file must be rejected, with one honest exception: a mutation
//! inside compressed (LZ4) bytes that still decompresses to the very same
//! page leaves the file's *content* unchanged (the file checksum covers the
//! decompressed pages, the compressed sizes and the index, not the
//! compressed bytes). Such a file is accepted and decodes to exactly the
//! original header, pages and trailer; it is counted separately as an
//! "equivalent-content acceptance". Any other acceptance fails the test.
//!
//! Default (CI): every header bit, every bit of the last 64 bytes, and a
//! seeded sample of the other bits, deletions and insertions; truncation at
//! every length. `LTX_SWEEP_FULL=1`: every bit, every deletion and every
//! insertion position for files up to 64 KiB (a seeded sample of 4,000 bits
//! and 2,000 positions each for larger files). Run with `-- --nocapture` to
//! see the counts. Results are in `spec/RELIABILITY.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use ltx_core::rng::SplitMix64;
use ltx_core::{Decoded, Decoder, Header, LtxFile, Trailer};

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance")
}

/// Every valid LTX file named by the manifest: valid cases, chain step
/// files and compaction outputs.
fn vector_files() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(conformance().join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut paths: Vec<String> = Vec::new();
    for c in m["cases"].as_array().unwrap() {
        match c["kind"].as_str().unwrap() {
            "valid" => paths.push(c["file"].as_str().unwrap().to_string()),
            "chain" => {
                for f in c["files"].as_array().unwrap() {
                    paths.push(f.as_str().unwrap().to_string());
                }
            }
            "compaction" => paths.push(c["output"].as_str().unwrap().to_string()),
            _ => {}
        }
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            let b = std::fs::read(conformance().join(&p)).unwrap();
            (p, b)
        })
        .collect()
}

/// The workspace's SplitMix64 ([`ltx_core::rng`]), reduced by `%` as the
/// mutations always were.
struct Rng(SplitMix64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a decoder made of a file: header, trailer and every page.
#[derive(PartialEq, Eq)]
struct Content {
    header: Header,
    trailer: Trailer,
    pages: Vec<(u32, Vec<u8>)>,
}

/// Streams `b` into a [`Decoder`] in pieces of `chunk` bytes.
/// `Some(content)` when accepted (pages collected only if `collect`).
fn stream(b: &[u8], chunk: usize, collect: bool) -> Option<Content> {
    let mut d = Decoder::new();
    let mut pages = Vec::new();
    let mut steps = 0usize;
    for piece in b.chunks(chunk.max(1)) {
        let mut input = piece;
        loop {
            steps += 1;
            assert!(steps < 4 * b.len() + 1000, "decoder does not make progress");
            let (n, ev) = d.decode(input).ok()?;
            input = &input[n..];
            match ev {
                Decoded::NeedMore | Decoded::Done(_) => break,
                Decoded::Page { info, data } => {
                    if collect {
                        pages.push((info.pgno, data.to_vec()));
                    }
                }
                Decoded::Header(_) => {}
            }
        }
        if !input.is_empty() {
            // Done with bytes left over: must have been refused.
            d.decode(input).ok()?;
            return None;
        }
    }
    let s = d.finish().ok()?;
    Some(Content {
        header: s.header,
        trailer: s.trailer,
        pages,
    })
}

/// `LtxFile::parse` + `verify`; `Some(content)` when accepted.
fn random_access(b: &[u8], collect: bool) -> Option<Content> {
    let f = LtxFile::parse(b).ok()?;
    let s = f.verify().ok()?;
    let mut pages = Vec::new();
    if collect {
        for e in f.index().entries() {
            let mut p = vec![0u8; f.header().page_size.bytes()];
            assert!(f.read_page(e.pgno, &mut p).ok()?);
            pages.push((e.pgno, p));
        }
    }
    Some(Content {
        header: s.header,
        trailer: s.trailer,
        pages,
    })
}

#[derive(Default, Clone, Copy, Debug)]
struct Tally {
    mutations: u64,
    /// Per decoder (stream, random access): mutations checked.
    tried: [u64; 2],
    /// Per decoder (stream, random access): rejected.
    rejected: [u64; 2],
    /// Accepted, and decodes to exactly the original content.
    equivalent: [u64; 2],
    /// Accepted with different content: a missed corruption.
    missed: [u64; 2],
    panics: [u64; 2],
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.mutations += o.mutations;
        for i in 0..2 {
            self.tried[i] += o.tried[i];
            self.rejected[i] += o.rejected[i];
            self.equivalent[i] += o.equivalent[i];
            self.missed[i] += o.missed[i];
            self.panics[i] += o.panics[i];
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize),
    Insert(usize, u8),
}

impl Mutation {
    fn apply(self, orig: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(orig);
        match self {
            Mutation::Flip(i, bit) => buf[i] ^= 1 << bit,
            Mutation::Delete(i) => {
                buf.remove(i);
            }
            Mutation::Insert(i, v) => buf.insert(i, v),
        }
    }
    fn kind(self) -> usize {
        match self {
            Mutation::Flip(..) => 0,
            Mutation::Delete(_) => 1,
            Mutation::Insert(..) => 2,
        }
    }
}

const KINDS: [&str; 4] = ["bit flip", "byte deletion", "byte insertion", "truncation"];

struct Findings {
    /// (file, mutation, decoder, what)
    failures: Vec<String>,
    /// Examples of equivalent-content acceptances.
    equivalents: Vec<String>,
}

fn payload(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "?".into())
}

/// Checks one mutated file with both decoders.
fn check(
    what: &str,
    bytes: &[u8],
    chunk: usize,
    original: &Content,
    t: &mut Tally,
    f: &Mutex<Findings>,
    with_file: bool,
) {
    t.mutations += 1;
    for dec in 0..if with_file { 2 } else { 1 } {
        t.tried[dec] += 1;
        let run = |collect: bool| {
            catch_unwind(AssertUnwindSafe(|| {
                if dec == 0 {
                    stream(bytes, chunk, collect)
                } else {
                    random_access(bytes, collect)
                }
            }))
        };
        let which = ["Decoder", "LtxFile"][dec];
        match run(false) {
            Err(e) => {
                t.panics[dec] += 1;
                f.lock()
                    .unwrap()
                    .failures
                    .push(format!("{what}: {which} PANICKED: {}", payload(&*e)));
            }
            Ok(None) => t.rejected[dec] += 1,
            Ok(Some(_)) => match run(true) {
                Ok(Some(c)) if c == *original => {
                    t.equivalent[dec] += 1;
                    let mut g = f.lock().unwrap();
                    if g.equivalents.len() < 20 {
                        g.equivalents.push(format!("{what}: {which}"));
                    }
                }
                _ => {
                    t.missed[dec] += 1;
                    f.lock().unwrap().failures.push(format!(
                        "{what}: {which} ACCEPTED a corrupted file (content differs)"
                    ));
                }
            },
        }
    }
}

/// The mutations tried on a file of `len` bytes whose index is `index_len`
/// bytes.
fn mutations(len: usize, full: bool, rng: &mut Rng) -> Vec<Mutation> {
    let mut v = Vec::new();
    const SMALL: usize = 64 * 1024;
    let bits = len * 8;
    if full && len <= SMALL {
        for i in 0..len {
            for b in 0..8 {
                v.push(Mutation::Flip(i, b));
            }
        }
        for i in 0..len {
            v.push(Mutation::Delete(i));
        }
        for i in 0..=len {
            v.push(Mutation::Insert(i, rng.next() as u8));
        }
        return v;
    }
    let (bit_sample, pos_sample) = if full {
        (4000, 2000)
    } else {
        (CI_BITS, CI_POSITIONS)
    };
    let mut seen = std::collections::HashSet::new();
    if !full {
        // One random bit of every header byte and of every one of the last
        // 64 bytes (trailer, index size field, end of the index).
        for i in (0..len.min(100)).chain(len.saturating_sub(64)..len) {
            let b = rng.below(8) as u8;
            if seen.insert((i, b)) {
                v.push(Mutation::Flip(i, b));
            }
        }
    }
    let target = seen.len() + bit_sample.min(bits);
    while seen.len() < target {
        let x = rng.below(bits as u64) as usize;
        let (i, b) = (x / 8, (x % 8) as u8);
        if seen.insert((i, b)) {
            v.push(Mutation::Flip(i, b));
        }
    }
    for _ in 0..pos_sample.min(len) {
        v.push(Mutation::Delete(rng.below(len as u64) as usize));
    }
    for _ in 0..pos_sample.min(len + 1) {
        v.push(Mutation::Insert(
            rng.below(len as u64 + 1) as usize,
            rng.next() as u8,
        ));
    }
    v
}

/// Random bits per file in CI (on top of header and tail bits).
const CI_BITS: usize = 200;
/// Random deletion and insertion positions per file in CI (each).
const CI_POSITIONS: usize = 40;

/// Truncation at every length: `Decoder` fed byte by byte, `finish()`
/// checked after every byte (exactly what a file cut there gives), and
/// `LtxFile::parse(prefix)` for every prefix.
fn truncations(name: &str, b: &[u8], t: &mut Tally, f: &Mutex<Findings>) {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut d = Decoder::new();
        let mut bad = Vec::new();
        if d.finish().is_ok() {
            bad.push(0);
        }
        for k in 0..b.len() {
            let mut input = &b[k..k + 1];
            while !input.is_empty() {
                let (n, _) = d.decode(input).expect("the intact file decodes");
                input = &input[n..];
            }
            if k + 1 < b.len() && d.finish().is_ok() {
                bad.push(k + 1);
            }
        }
        assert!(d.finish().is_ok(), "the whole file is accepted");
        bad
    }));
    let n = b.len() as u64;
    t.mutations += n;
    t.tried[0] += n;
    t.tried[1] += n;
    match r {
        Ok(bad) => {
            t.rejected[0] += n - bad.len() as u64;
            t.missed[0] += bad.len() as u64;
            for k in bad {
                f.lock()
                    .unwrap()
                    .failures
                    .push(format!("{name}: truncated to {k} bytes: Decoder ACCEPTED"));
            }
        }
        Err(e) => {
            t.panics[0] += n;
            f.lock().unwrap().failures.push(format!(
                "{name}: truncation: Decoder PANICKED: {}",
                payload(&*e)
            ));
        }
    }
    for k in 0..b.len() {
        match catch_unwind(|| random_access(&b[..k], false).is_some()) {
            Ok(false) => t.rejected[1] += 1,
            Ok(true) => {
                t.missed[1] += 1;
                f.lock()
                    .unwrap()
                    .failures
                    .push(format!("{name}: truncated to {k} bytes: LtxFile ACCEPTED"));
            }
            Err(e) => {
                t.panics[1] += 1;
                f.lock().unwrap().failures.push(format!(
                    "{name}: truncated to {k} bytes: LtxFile PANICKED: {}",
                    payload(&*e)
                ));
            }
        }
    }
}

#[test]
fn every_corruption_is_rejected() {
    let full = std::env::var("LTX_SWEEP_FULL").is_ok_and(|v| v == "1");
    // LtxFile::verify costs ~0.5 ms per call whatever the file size (it
    // builds a CRC-combine operator), 10x the streaming decoder on these
    // files: LTX_SWEEP_FILE_EVERY=N checks LtxFile on every N-th mutation
    // only (default 1 = every mutation). Truncations always use both.
    let file_every: usize = std::env::var("LTX_SWEEP_FILE_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let started = Instant::now();
    std::panic::set_hook(Box::new(|_| {})); // panics are caught and reported below
    let files = vector_files();
    assert!(files.len() >= 80, "expected the whole vector set");

    // One unit of work per file; two worker threads.
    let findings = Mutex::new(Findings {
        failures: Vec::new(),
        equivalents: Vec::new(),
    });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let totals: Mutex<[Tally; 4]> = Mutex::new([Tally::default(); 4]);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((name, orig)) = files.get(i) else {
                    break;
                };
                let mut t = [Tally::default(); 4];
                let file_started = Instant::now();
                let original = stream(orig, orig.len(), true).expect("vector decodes");
                assert!(
                    random_access(orig, true).unwrap() == original,
                    "{name}: decoders disagree"
                );
                let mut rng = Rng(SplitMix64::new(
                    0x5EED_0000 ^ (i as u64) << 20 ^ orig.len() as u64,
                ));
                let mut buf = Vec::with_capacity(orig.len() + 1);
                for (j, m) in mutations(orig.len(), full, &mut rng)
                    .into_iter()
                    .enumerate()
                {
                    m.apply(orig, &mut buf);
                    // Vary how the stream is cut (whole, pages, odd pieces).
                    let chunk = [usize::MAX, 4096, 997, 61][j % 4];
                    check(
                        &format!("{name}: {m:?}"),
                        &buf,
                        chunk,
                        &original,
                        &mut t[m.kind()],
                        &findings,
                        j % file_every == 0,
                    );
                }
                let mutated = file_started.elapsed();
                truncations(name, orig, &mut t[3], &findings);
                if std::env::var_os("LTX_SWEEP_VERBOSE").is_some() {
                    println!(
                        "{name}: {} bytes, {} mutations in {:.2}s, {} truncations in {:.2}s",
                        orig.len(),
                        t[0].mutations + t[1].mutations + t[2].mutations,
                        mutated.as_secs_f64(),
                        t[3].mutations,
                        (file_started.elapsed() - mutated).as_secs_f64()
                    );
                }
                let mut g = totals.lock().unwrap();
                for k in 0..4 {
                    g[k].add(&t[k]);
                }
            });
        }
    });
    let _ = std::panic::take_hook();

    let totals = totals.into_inner().unwrap();
    let findings = findings.into_inner().unwrap();
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    println!(
        "sweep ({}): {} files, {} bytes, {:.1}s",
        if full {
            "LTX_SWEEP_FULL=1"
        } else {
            "CI sample"
        },
        files.len(),
        bytes,
        started.elapsed().as_secs_f64()
    );
    let row = |label: &str, t: &Tally| {
        println!(
            "{label:<15} | {:>10} {:>10} {:>6} {:>6} {:>6} | {:>10} {:>10} {:>6} {:>6} {:>6}",
            t.tried[0],
            t.rejected[0],
            t.equivalent[0],
            t.missed[0],
            t.panics[0],
            t.tried[1],
            t.rejected[1],
            t.equivalent[1],
            t.missed[1],
            t.panics[1]
        )
    };
    println!(
        "{:<15} | {:>10} {:>10} {:>6} {:>6} {:>6} | {:>10} {:>10} {:>6} {:>6} {:>6}",
        "mutation",
        "D tried",
        "rejected",
        "equiv",
        "missed",
        "panics",
        "F tried",
        "rejected",
        "equiv",
        "missed",
        "panics"
    );
    let mut all = Tally::default();
    for (k, t) in totals.iter().enumerate() {
        all.add(t);
        row(KINDS[k], t);
    }
    row("total", &all);
    println!("(D = streaming Decoder, F = LtxFile::parse + verify; equiv = accepted but decodes to the identical header, pages and trailer)");
    for e in &findings.equivalents {
        println!("equivalent-content example: {e}");
    }
    assert!(
        findings.failures.is_empty(),
        "{} failures, first ones:\n{}",
        findings.failures.len(),
        findings
            .failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for t in &totals {
        for d in 0..2 {
            assert_eq!(t.rejected[d] + t.equivalent[d], t.tried[d]);
        }
    }
    // Only bit flips inside compressed bytes can leave the content intact.
    for t in &totals[1..] {
        assert_eq!(t.equivalent, [0, 0]);
    }
}
