//! Throughput of the core paths, in MB/s of (decompressed) page data:
//! encode, streaming decode+verify, random-access verify, merge (frame copy).
//! The CLI's whole-process numbers are in ltx-cli/benches/cli.sh.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ltx_core::checksum::{database_checksum, DbChecksum};
use ltx_core::merge::{merge_files, MergeOptions};
use ltx_core::rng::SplitMix64;
use ltx_core::{Checksum, Decoded, Decoder, Encoder, Header, LtxFile, PageSize, TxId};

const PAGES: u32 = 4096; // 16 MiB of 4 KiB pages

/// Pages that look like a real database: half-full b-tree pages with text
/// and integers, compressing roughly 2-3x.
fn database(pages: u32) -> Vec<u8> {
    let mut db = vec![0u8; pages as usize * 4096];
    let mut x = SplitMix64::new(0x9e3779b97f4a7c15);
    for (i, page) in db.chunks_mut(4096).enumerate() {
        page[0] = 13;
        for (j, b) in page.iter_mut().enumerate().skip(8) {
            if j % 4096 < 1800 {
                continue;
            }
            *b = if j % 3 == 0 {
                b'a' + (x.next_u64() % 26) as u8
            } else {
                (i + j / 64) as u8
            };
        }
    }
    db
}

fn snapshot(db: &[u8]) -> Vec<u8> {
    let ps = PageSize::new(4096).unwrap();
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = (db.len() / 4096) as u32;
    let mut out = Vec::with_capacity(db.len());
    let mut enc = Encoder::new(h, &mut out).unwrap();
    for (i, page) in db.chunks(4096).enumerate() {
        enc.write_page(&mut out, i as u32 + 1, page).unwrap();
    }
    enc.finish(&mut out, database_checksum(ps, db)).unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let db = database(PAGES);
    let file = snapshot(&db);
    let mut g = c.benchmark_group("ltx");
    g.throughput(Throughput::Bytes(db.len() as u64));
    g.sample_size(10);

    g.bench_function("encode", |b| b.iter(|| snapshot(&db)));

    g.bench_function("decode_streaming", |b| {
        b.iter(|| {
            let mut dec = Decoder::new();
            let mut input = &file[..];
            loop {
                let (n, ev) = dec.decode(input).unwrap();
                input = &input[n..];
                if let Decoded::Done(_) = ev {
                    break;
                }
            }
        })
    });

    for chunk in [4096usize, 65536] {
        g.bench_with_input(
            BenchmarkId::new("decode_streaming_chunks", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut dec = Decoder::new();
                    for piece in file.chunks(chunk) {
                        let mut input = piece;
                        while !input.is_empty() {
                            let (n, _) = dec.decode(input).unwrap();
                            input = &input[n..];
                        }
                    }
                    dec.finish().unwrap()
                })
            },
        );
    }

    g.bench_function("verify_random_access", |b| {
        b.iter(|| LtxFile::parse(&file).unwrap().verify().unwrap())
    });

    g.bench_function("database_checksum", |b| {
        b.iter(|| {
            let mut s = DbChecksum::new(PageSize::new(4096).unwrap());
            for (i, p) in db.chunks(4096).enumerate() {
                s.add(i as u32 + 1, p);
            }
            s.value()
        })
    });

    // Merge: the snapshot plus an incremental rewriting every 4th page.
    let ps = PageSize::new(4096).unwrap();
    let mut h = Header::new(ps, TxId(2), TxId(2));
    h.commit = PAGES;
    h.pre_apply_checksum = Checksum(1 << 63 | 1);
    let mut inc = Vec::new();
    let mut enc = Encoder::new(h, &mut inc).unwrap();
    for p in (1..=PAGES).step_by(4) {
        enc.write_page(&mut inc, p, &db[(p as usize - 1) * 4096..p as usize * 4096])
            .unwrap();
    }
    enc.finish(&mut inc, Checksum(1 << 63 | 2)).unwrap();
    g.bench_function("merge_snapshot_plus_incremental", |b| {
        b.iter(|| {
            let inputs = [
                LtxFile::parse(&file).unwrap(),
                LtxFile::parse(&inc).unwrap(),
            ];
            let mut out = Vec::with_capacity(file.len());
            merge_files(
                &inputs,
                &MergeOptions {
                    flags: 0x2,
                    allow_gaps: false,
                },
                &mut out,
            )
            .unwrap();
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
