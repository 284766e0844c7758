//! ltx-core against the reference vectors in testdata/conformance: every
//! valid file decodes (streaming, whole, and byte by byte) to the manifest's
//! values; every invalid and reference-accepts file is rejected by both paths.

use std::path::{Path, PathBuf};

use ltx_core::{Decoded, Decoder, Error, LtxFile, Summary};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("manifest.json")).unwrap()).unwrap()
}

/// Streams `bytes` through a decoder in chunks of `chunk`; returns pages and summary.
fn stream(bytes: &[u8], chunk: usize) -> Result<(Vec<(u32, String)>, Summary), Error> {
    let mut dec = Decoder::new();
    let mut pages = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let mut input = piece;
        loop {
            let (n, ev) = dec.decode(input)?;
            input = &input[n..];
            match ev {
                Decoded::Page { info, data } => {
                    pages.push((info.pgno, hex::encode(Sha256::digest(data))))
                }
                Decoded::NeedMore => break,
                _ => {}
            }
            if input.is_empty() {
                break;
            }
        }
    }
    let s = dec.finish()?;
    Ok((pages, s))
}

#[test]
fn valid_vectors_decode_to_manifest_values() {
    let m = manifest();
    let mut n = 0;
    for c in m["cases"].as_array().unwrap() {
        if c["kind"] != "valid" {
            continue;
        }
        let name = c["name"].as_str().unwrap();
        let bytes = std::fs::read(root().join(c["file"].as_str().unwrap())).unwrap();
        let want: Vec<(u32, String)> = c["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pgno"].as_u64().unwrap() as u32,
                    p["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for chunk in [1, 7, 4096, usize::MAX] {
            let (pages, s) = stream(&bytes, chunk.min(bytes.len()))
                .unwrap_or_else(|e| panic!("{name} chunk {chunk}: {e}"));
            assert_eq!(pages, want, "{name}");
            assert_eq!(
                s.trailer.file_checksum.to_string(),
                c["trailer"]["file_checksum"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                s.index_size,
                c["page_index_size"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(s.file_size, c["file_size"].as_u64().unwrap(), "{name}");
        }
        let f = LtxFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        f.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        n += 1;
    }
    assert_eq!(n, 12);
}

#[test]
fn invalid_vectors_are_rejected() {
    let m = manifest();
    let mut n = 0;
    for c in m["cases"].as_array().unwrap() {
        let kind = c["kind"].as_str().unwrap();
        if kind != "invalid" && kind != "reference-accepts" {
            continue;
        }
        let name = c["name"].as_str().unwrap();
        let cat = c["category"].as_str().unwrap();
        let bytes = std::fs::read(root().join(c["file"].as_str().unwrap())).unwrap();
        let e1 = stream(&bytes, usize::MAX)
            .err()
            .unwrap_or_else(|| panic!("{name} ({cat}) accepted by the streaming decoder"));
        let e2 = LtxFile::parse(&bytes)
            .and_then(|f| f.verify())
            .err()
            .unwrap_or_else(|| panic!("{name} ({cat}) accepted by LtxFile"));
        eprintln!(
            "{name} [{cat}]: stream: {} {e1} | file: {} {e2}",
            e1.category().unwrap_or("-"),
            e2.category().unwrap_or("-")
        );
        n += 1;
    }
    assert_eq!(n, 30);
}
