//! Format versions 1 and 2 against testdata/conformance-old: every valid file
//! (valid cases, chain steps, compaction outputs) decodes under its version
//! (whole, in chunks, byte by byte, and split at every point for small files)
//! to the manifest's header, pages and trailer, and `detect` names its
//! version; every invalid and reference-accepts file is rejected by every
//! layout, so detection says that none validates.

use std::path::{Path, PathBuf};

use ltx_core::old::{detect, detect_summary, verify_as, DetectError};
use ltx_core::{AnyDecoder, Decoded, Error, FormatVersion, Summary};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance-old")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("manifest.json")).unwrap()).unwrap()
}

type Page = (u32, u64, u64, String);

/// Feeds `pieces` in order; returns pages (pgno, offset, frame_len, sha256) and summary.
fn stream_pieces<'a>(
    version: FormatVersion,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<Page>, Summary), Error> {
    let mut dec = AnyDecoder::new(version);
    let mut pages = Vec::new();
    for piece in pieces {
        let mut input = piece;
        loop {
            let (n, ev) = dec.decode(input)?;
            assert!(n <= input.len());
            input = &input[n..];
            match ev {
                Decoded::Page { info, data } => pages.push((
                    info.pgno,
                    info.offset,
                    info.frame_len,
                    hex::encode(Sha256::digest(data)),
                )),
                Decoded::NeedMore => {
                    assert!(input.is_empty(), "NeedMore with input left");
                    break;
                }
                Decoded::Done(_) if input.is_empty() => break,
                _ => {}
            }
        }
    }
    let s = dec.finish()?;
    assert_eq!(s.page_count, pages.len() as u64);
    Ok((pages, s))
}

fn stream(
    version: FormatVersion,
    bytes: &[u8],
    chunk: usize,
) -> Result<(Vec<Page>, Summary), Error> {
    stream_pieces(version, bytes.chunks(chunk.max(1)))
}

fn hexnum(v: &Value) -> u64 {
    match v {
        Value::String(s) => u64::from_str_radix(s, 16).unwrap(),
        v => v.as_u64().unwrap(),
    }
}

fn version_of(case: &Value) -> FormatVersion {
    FormatVersion::from_number(case["format_version"].as_u64().unwrap()).unwrap()
}

/// Checks one valid-style description `desc` of the file at `rel`.
fn check_valid(name: &str, version: FormatVersion, rel: &str, desc: &Value) {
    let bytes = std::fs::read(root().join(rel)).unwrap();
    assert_eq!(detect(&bytes), Ok(version), "{name}: detected version");
    let (pages, s) = stream(version, &bytes, usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(s.format_version, version);
    let h = &desc["header"];
    assert_eq!(
        u64::from(s.header.flags),
        h["flags"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        u64::from(s.header.page_size.get()),
        h["page_size"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(s.header.commit),
        h["commit"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(s.header.min_txid.0, hexnum(&h["min_txid"]));
    assert_eq!(s.header.max_txid.0, hexnum(&h["max_txid"]));
    assert_eq!(s.header.timestamp, h["timestamp"].as_i64().unwrap());
    assert_eq!(
        s.header.pre_apply_checksum.0,
        hexnum(&h["pre_apply_checksum"])
    );
    assert_eq!(s.header.node_id, h["node_id"].as_u64().unwrap());
    assert_eq!(s.header.wal_offset, h["wal_offset"].as_i64().unwrap());
    assert_eq!(
        u64::from(s.header.wal_salt1),
        h["wal_salt1"].as_u64().unwrap()
    );
    let t = &desc["trailer"];
    assert_eq!(
        s.trailer.post_apply_checksum.0,
        hexnum(&t["post_apply_checksum"]),
        "{name}"
    );
    assert_eq!(
        s.trailer.file_checksum.0,
        hexnum(&t["file_checksum"]),
        "{name}"
    );
    if let Some(fs) = desc.get("file_size") {
        assert_eq!(s.file_size, fs.as_u64().unwrap(), "{name}: file size");
    }
    if let Some(is) = desc.get("page_index_size") {
        assert_eq!(s.index_size, is.as_u64().unwrap(), "{name}: index size");
    }
    let want = desc["pages"].as_array().unwrap();
    assert_eq!(pages.len(), want.len(), "{name}: page count");
    for (g, w) in pages.iter().zip(want) {
        assert_eq!(u64::from(g.0), w["pgno"].as_u64().unwrap(), "{name}");
        assert_eq!(g.3, w["sha256"].as_str().unwrap(), "{name}: page {}", g.0);
        if let Some(o) = w.get("stream_offset") {
            assert_eq!(g.1, o.as_u64().unwrap(), "{name}: stream offset");
        }
        if let Some(o) = w.get("frame_offset") {
            assert_eq!(g.1, o.as_u64().unwrap(), "{name}: frame offset");
            assert_eq!(g.2, w["frame_size"].as_u64().unwrap(), "{name}: frame size");
        }
    }
    // Every other chunking gives the same result.
    let mut chunks = vec![4093, 256, 7, 3];
    if bytes.len() <= 64 * 1024 {
        chunks.push(1);
    }
    for c in chunks {
        let (p2, s2) = stream(version, &bytes, c).unwrap_or_else(|e| panic!("{name} ({c}): {e}"));
        assert_eq!((&p2, s2), (&pages, s), "{name}: chunk {c}");
    }
    // Small files: split at every point.
    if bytes.len() <= 4096 {
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (p2, s2) = stream_pieces(version, [a, b]).unwrap();
            assert_eq!((&p2, s2), (&pages, s), "{name}: split at {at}");
        }
    }
    // Truncated anywhere: an error under every layout, never a panic.
    let step = (bytes.len() / 200).max(1);
    for n in (0..bytes.len()).step_by(step) {
        for v in FormatVersion::ALL {
            assert!(
                verify_as(&bytes[..n], v).is_err(),
                "{name}: truncated to {n} as {v}"
            );
        }
    }
}

#[test]
fn valid_files_decode_to_the_manifest_and_are_detected() {
    let m = manifest();
    let mut n = 0;
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let v = version_of(case);
        match case["kind"].as_str().unwrap() {
            "valid" => {
                check_valid(name, v, case["file"].as_str().unwrap(), case);
                n += 1;
            }
            "chain" => {
                for step in case["steps"].as_array().unwrap() {
                    check_valid(name, v, step["file"].as_str().unwrap(), step);
                    n += 1;
                }
            }
            "compaction" => {
                check_valid(name, v, case["output"].as_str().unwrap(), case);
                n += 1;
            }
            _ => {}
        }
    }
    assert!(n >= 33, "only {n} valid files");
}

#[test]
fn invalid_files_are_rejected_by_every_layout() {
    let m = manifest();
    let mut n = 0;
    for case in m["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        if kind != "invalid" && kind != "reference-accepts" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let bytes = std::fs::read(root().join(case["file"].as_str().unwrap())).unwrap();
        match detect_summary(&bytes) {
            Err(DetectError::None(errs)) => assert_eq!(errs.len(), 3),
            other => panic!("{name}: expected no layout to validate, got {other:?}"),
        }
        let v = version_of(case);
        for c in [usize::MAX, 1] {
            assert!(stream(v, &bytes, c).is_err(), "{name}: accepted as {v}");
        }
        n += 1;
    }
    assert!(n >= 74, "only {n} invalid files");
}

#[test]
fn decoders_are_poisoned_after_an_error() {
    let bytes = std::fs::read(root().join("invalid/v1-bad-magic.ltx")).unwrap();
    for v in FormatVersion::ALL {
        let mut d = AnyDecoder::new(v);
        assert!(d.decode(&bytes).is_err());
        assert!(matches!(
            d.decode(&bytes).unwrap_err().kind(),
            ltx_core::ErrorKind::Poisoned
        ));
        assert!(d.finish().is_err());
    }
}
