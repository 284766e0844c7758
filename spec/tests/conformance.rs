//! The runner over the reference vectors, and proof that it notices
//! differences: a copy of the vectors with a doctored manifest must fail
//! exactly the doctored cases.

use std::path::{Path, PathBuf};
use std::process::Command;

use ltx_spec::manifest::{
    Case, ChainCase, CompactionCase, DbCase, Entry, Manifest, Num, ValidCase,
};
use ltx_spec::{run, run_with, Options, Report};
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance")
}

fn manifest(dir: &Path) -> Manifest {
    Manifest::load(dir).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A copy of the vectors in a temp dir.
fn copy_vectors() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&vectors(), tmp.path());
    tmp
}

fn write_manifest(dir: &Path, m: &Manifest) {
    m.save(dir).unwrap();
}

/// Writes a manifest given as raw JSON (for manifests the model cannot
/// hold: malformed cases, unknown kinds).
fn write_raw_manifest(dir: &Path, m: &Value) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

fn case_mut<'a>(m: &'a mut Manifest, name: &str) -> &'a mut Case {
    m.case_mut(name).unwrap_or_else(|| panic!("no case {name}"))
}

fn valid<'a>(m: &'a mut Manifest, name: &str) -> &'a mut ValidCase {
    match case_mut(m, name) {
        Case::Valid(c) => c,
        c => panic!("{name} is {}", c.kind()),
    }
}

fn compaction<'a>(m: &'a mut Manifest, name: &str) -> &'a mut CompactionCase {
    match case_mut(m, name) {
        Case::Compaction(c) => c,
        c => panic!("{name} is {}", c.kind()),
    }
}

fn chain<'a>(m: &'a mut Manifest, name: &str) -> &'a mut ChainCase {
    match case_mut(m, name) {
        Case::Chain(c) => c,
        c => panic!("{name} is {}", c.kind()),
    }
}

fn db<'a>(m: &'a mut Manifest, name: &str) -> &'a mut DbCase {
    match case_mut(m, name) {
        Case::Db(c) => c,
        c => panic!("{name} is {}", c.kind()),
    }
}

/// The file of an `invalid` or `reference-accepts` case.
fn rejected_file<'a>(m: &'a mut Manifest, name: &str) -> &'a mut Option<String> {
    match case_mut(m, name) {
        Case::Invalid(c) | Case::ReferenceAccepts(c) => &mut c.file,
        c => panic!("{name} is {}", c.kind()),
    }
}

/// The category of an `invalid` or `reference-accepts` case.
fn category<'a>(m: &'a mut Manifest, name: &str) -> &'a mut Option<String> {
    match case_mut(m, name) {
        Case::Invalid(c) | Case::ReferenceAccepts(c) => &mut c.category,
        c => panic!("{name} is {}", c.kind()),
    }
}

/// Changes the lowest bit of a SHA-256 value.
fn flip_sha(v: &mut Option<ltx_spec::manifest::Sha256Hex>) {
    v.as_mut().expect("a sha256").0[31] ^= 1;
}

/// Changes the lowest bit of a checksum or TXID.
fn flip_num(v: &mut Option<Num>) {
    let n = v.expect("a number");
    *v = Some(Num::Hex(n.value() as u64 ^ 1));
}

/// Adds `d` to a number.
fn bump(v: &mut Option<Num>, d: i128) {
    *v = Some(Num::Int(v.expect("a number").value() + d));
}

fn failures(r: &Report, name: &str) -> String {
    r.cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
        .failures
        .join("; ")
}

fn assert_no_panics(r: &Report) {
    for c in &r.cases {
        for f in &c.failures {
            assert!(!f.contains("PANIC"), "{}: {f}", c.name);
        }
    }
}

/// Runs every case of a vector set and asserts all `expected` of them pass
/// cleanly (no fatal error, no panic, exit code 0).
fn assert_all_pass(dir: &Path, expected: usize) {
    assert_eq!(manifest(dir).cases.len(), expected);
    let r = run(dir, true);
    assert_eq!(r.fatal, None);
    for l in r.lines() {
        eprintln!("{l}");
    }
    assert_eq!(r.failed(), 0, "{:?}", r.failed_names());
    assert_eq!(r.passed(), expected);
    assert_eq!(r.summary(), format!("{expected} passed, 0 failed"));
    assert_eq!(r.exit_code(), 0);
    assert_no_panics(&r);
}

#[test]
fn reference_vectors_all_pass() {
    // testdata/conformance/README.md: 4 chain + 9 compaction + 3 db + 24
    // invalid + 6 reference-accepts + 12 valid.
    assert_all_pass(&vectors(), 58);
}

fn old_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance-old")
}

#[test]
fn old_format_vectors_all_pass() {
    // testdata/conformance-old/README.md: 125 cases of format versions 1 and 2.
    assert_all_pass(&old_vectors(), 125);
}

#[test]
fn doctored_old_manifest_fails_exactly_the_doctored_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_dir(&old_vectors(), dir);
    let mut m = manifest(dir);
    let n = m.cases.len();
    // A v1 LZ4 page's stream offset, a v2 frame size, a v1 chain step's
    // database, a v2 compaction's page, a format version swapped (v1 file
    // read as v2), and an invalid v2 case pointing at a valid v2 file.
    bump(
        &mut valid(&mut m, "v1-snapshot-4k-lz4")
            .desc
            .pages
            .as_mut()
            .unwrap()[2]
            .stream_offset,
        1,
    );
    bump(
        &mut valid(&mut m, "v2-snapshot-4k").desc.pages.as_mut().unwrap()[1].frame_size,
        1,
    );
    flip_sha(&mut chain(&mut m, "v1-chain-4k-lz4").steps.as_mut().unwrap()[3].db_sha256);
    let pages = compaction(&mut m, "v2-compact-4k-2-10").desc.pages.as_mut();
    pages.unwrap()[1].sha256.0[31] ^= 1;
    case_mut(&mut m, "v1-snapshot-512-tiny-lz4")
        .common_mut()
        .format_version = Some(2);
    *rejected_file(&mut m, "v2-bad-magic") = Some("valid/v2-snapshot-4k.ltx".into());
    write_manifest(dir, &m);
    let r = run(dir, false);
    assert_no_panics(&r);
    let mut failed = r.failed_names();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            "v1-chain-4k-lz4",
            // applies_to v1-snapshot-512-tiny-lz4, whose base no longer decodes
            "v1-incremental-512-tiny-lz4",
            "v1-snapshot-4k-lz4",
            "v1-snapshot-512-tiny-lz4",
            "v2-bad-magic",
            "v2-compact-4k-2-10",
            "v2-snapshot-4k",
        ]
    );
    assert!(failures(&r, "v1-snapshot-4k-lz4").contains("frame_offset expected"));
    assert!(failures(&r, "v2-bad-magic").contains("accepted by detect"));
    assert_eq!(r.summary(), format!("{} passed, 7 failed", n - 7));
}

#[test]
fn doctored_manifest_fails_exactly_the_doctored_cases() {
    let tmp = copy_vectors();
    let dir = tmp.path();
    let mut m = manifest(dir);
    let n = m.cases.len();

    // Expected values changed.
    valid(&mut m, "snapshot-db-4k").desc.pages.as_mut().unwrap()[3]
        .sha256
        .0[31] ^= 1;
    bump(
        &mut valid(&mut m, "incremental-db-4k")
            .desc
            .header
            .as_mut()
            .unwrap()
            .timestamp,
        1,
    );
    let header = compaction(&mut m, "compact-4k-2-10").desc.header.as_mut();
    flip_num(&mut header.unwrap().pre_apply_checksum);
    let pages = compaction(&mut m, "compact-4k-11-20").desc.pages.as_mut();
    pages.unwrap()[2].sha256.0[31] ^= 1;
    flip_sha(
        &mut compaction(&mut m, "compact-4k-1-20")
            .db_after
            .as_mut()
            .unwrap()
            .sha256,
    );
    flip_num(&mut db(&mut m, "db-512").db.checksum);
    flip_sha(&mut chain(&mut m, "chain-512-checksums").steps.as_mut().unwrap()[4].db_sha256);
    let trailer = valid(&mut m, "edge-4k-empty-snapshot")
        .desc
        .trailer
        .as_mut();
    flip_num(&mut trailer.unwrap().file_checksum);
    bump(
        &mut valid(&mut m, "legacy-snapshot-db-512")
            .desc
            .pages
            .as_mut()
            .unwrap()[0]
            .frame_offset,
        1,
    );
    bump(
        &mut valid(&mut m, "snapshot-db-512").desc.page_index_size,
        1,
    );
    valid(&mut m, "crafted-literal-only-blocks").desc.encoding = Some("legacy-frame".into());
    // An "invalid" case whose file is actually valid.
    *rejected_file(&mut m, "bad-magic-ltx2") = Some("valid/snapshot-db-4k.ltx".into());

    // A damaged vector file (a flipped byte in the header's timestamp).
    let f = dir.join("valid/incremental-db-512-txid-range.ltx");
    let mut b = std::fs::read(&f).unwrap();
    b[39] ^= 1;
    std::fs::write(&f, b).unwrap();

    // New cases: an unknown kind, an unsupported format version, a missing
    // file; and two that must still pass: garbage rejected as invalid, and a
    // valid case with an unknown field.
    m.cases.push(Entry::raw(
        &json!({"name": "future-kind", "kind": "wal-segment", "file": "x"}),
    ));
    let mut v4 = case_mut(&mut m, "snapshot-db-4k-full-vacuum-nochecksum").clone();
    v4.common_mut().name = Some("v4-case".into());
    v4.common_mut().format_version = Some(4);
    m.cases.push(v4.into());
    m.cases.push(Entry::raw(
        &json!({"name": "missing-file", "kind": "valid", "file": "valid/nope.ltx"}),
    ));
    std::fs::write(
        dir.join("garbage.ltx"),
        b"LTX1 this is not an LTX file at all",
    )
    .unwrap();
    m.cases.push(Entry::raw(
        &json!({"name": "garbage", "kind": "invalid", "category": "truncated", "file": "garbage.ltx"}),
    ));
    // Written verbatim, so the runner really meets the unknown field.
    let mut extra = case_mut(&mut m, "snapshot-db-4k-full-vacuum-nochecksum").clone();
    extra.common_mut().name = Some("with-unknown-field".into());
    let mut extra = serde_json::to_value(&extra).unwrap();
    extra["some_future_field"] = json!({"nested": [1, 2, 3]});
    m.cases.push(Entry::raw(&extra));
    write_manifest(dir, &m);

    let r = run(dir, false);
    assert_eq!(r.fatal, None);
    for l in r.lines() {
        eprintln!("{l}");
    }
    assert_no_panics(&r);
    let mut failed = r.failed_names();
    failed.sort_unstable();
    let mut want = vec![
        "snapshot-db-4k",
        "incremental-db-4k",
        "compact-4k-2-10",
        "compact-4k-11-20",
        "compact-4k-1-20",
        "db-512",
        "chain-512-checksums",
        "edge-4k-empty-snapshot",
        "legacy-snapshot-db-512",
        "snapshot-db-512",
        "crafted-literal-only-blocks",
        "bad-magic-ltx2",
        "incremental-db-512-txid-range",
        "future-kind",
        "v4-case",
        "missing-file",
    ];
    want.sort_unstable();
    assert_eq!(failed, want);
    assert_eq!(r.cases.len(), n + 5);
    assert_eq!(r.passed(), n + 5 - want.len());
    assert_eq!(r.exit_code(), 1);
    assert_eq!(
        r.summary(),
        format!("{} passed, {} failed", n + 5 - want.len(), want.len())
    );

    // Each failure names what differed.
    let has = |name: &str, what: &str| {
        let f = failures(&r, name);
        assert!(f.contains(what), "{name}: {f:?} lacks {what:?}");
    };
    has("snapshot-db-4k", "pages[3] (pgno 4): sha256 expected");
    has("incremental-db-4k", "header.timestamp: expected");
    has("compact-4k-2-10", "our output: ");
    has("compact-4k-2-10", "header.pre_apply_checksum");
    has("compact-4k-2-10", "expected output: ");
    has("compact-4k-11-20", "pages[2]");
    has("compact-4k-1-20", "applied to the base: sha256: expected");
    has("db-512", "checksum: expected");
    has("chain-512-checksums", "step 5 (");
    has("chain-512-checksums", "db_sha256: expected");
    has("edge-4k-empty-snapshot", "trailer.file_checksum");
    has("legacy-snapshot-db-512", "frame_offset expected");
    has("snapshot-db-512", "page_index_size: expected");
    has(
        "crafted-literal-only-blocks",
        "encoding: expected legacy-frame",
    );
    has("bad-magic-ltx2", "accepted by the streaming decoder");
    has("bad-magic-ltx2", "accepted by LtxFile::parse+verify");
    has(
        "incremental-db-512-txid-range",
        "rejected: file-checksum-mismatch",
    );
    has("future-kind", "unknown kind \"wal-segment\"");
    has("v4-case", "format version 4 not supported");
    has("missing-file", "cannot read valid/nope.ltx");

    // The output lines name the case and what differed.
    let lines = r.lines();
    assert!(lines
        .iter()
        .any(|l| l.starts_with("FAIL v4-case: format version 4 not supported")));
    assert_eq!(lines.len(), want.len());
}

#[test]
fn top_level_format_version_applies_to_every_case() {
    let tmp = tempfile::tempdir().unwrap();
    let m = json!({"format_version": 7, "cases": [
        {"name": "a", "kind": "db", "file": "x.db", "page_size": 512},
        {"name": "b", "kind": "db", "file": "x.db", "page_size": 512, "format_version": 3},
    ]});
    std::fs::write(tmp.path().join("x.db"), vec![0u8; 0]).unwrap();
    write_raw_manifest(tmp.path(), &m);
    let r = run(tmp.path(), false);
    assert_eq!(failures(&r, "a"), "format version 7 not supported");
    // b is checked (and fails only on its missing expected values).
    assert!(failures(&r, "b").contains("manifest: no numeric \"pages\""));
}

#[test]
fn malformed_cases_fail_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("junk.bin"),
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::copy(
        vectors().join("valid/snapshot-db-512.ltx"),
        dir.join("snap.ltx"),
    )
    .unwrap();
    let m = json!({"cases": [
        42,
        {"kind": "valid"},
        {"name": "no-kind"},
        {"name": "valid-junk", "kind": "valid", "file": "junk.bin", "header": 5, "pages": "x"},
        {"name": "valid-no-desc", "kind": "valid", "file": "snap.ltx"},
        {"name": "valid-bad-applies", "kind": "valid", "file": "snap.ltx", "applies_to": "nobody",
         "db_after": {"pages": 1, "sha256": "00".repeat(32), "checksum": "0000000000000000"}},
        {"name": "chain-junk", "kind": "chain", "steps": [{}], "final_db": 7},
        {"name": "chain-none", "kind": "chain"},
        {"name": "compaction-junk", "kind": "compaction", "inputs": [123]},
        {"name": "compaction-junk-input", "kind": "compaction", "inputs": ["junk.bin"]},
        {"name": "compaction-no-inputs", "kind": "compaction"},
        {"name": "db-bad-page-size", "kind": "db", "file": "junk.bin", "page_size": 1000},
        {"name": "db-no-file", "kind": "db"},
    ]});
    write_raw_manifest(dir, &m);
    let r = run(dir, true);
    assert_eq!(r.fatal, None);
    for l in r.lines() {
        eprintln!("{l}");
    }
    assert_no_panics(&r);
    assert_eq!(r.cases.len(), 13);
    assert_eq!(r.passed(), 0, "{:?}", r.lines());
    assert_eq!(r.cases[0].name, "#0");
    assert_eq!(r.cases[1].name, "#1");
    assert_eq!(failures(&r, "#0"), "case is not a JSON object");
    assert!(failures(&r, "#1").contains("case has no \"name\""));
    assert_eq!(failures(&r, "no-kind"), "case has no \"kind\"");
    for name in ["valid-junk", "chain-junk", "compaction-junk"] {
        assert!(
            failures(&r, name).contains("fields do not have the documented types"),
            "{name}: {}",
            failures(&r, name)
        );
    }
    assert!(failures(&r, "valid-no-desc").contains("manifest: no \"header\""));
    assert!(failures(&r, "valid-bad-applies").contains("no case named \"nobody\""));
    assert!(failures(&r, "db-bad-page-size").contains("1000 is not a valid page size"));
    assert!(failures(&r, "db-no-file").contains("no \"file\" path"));
}

#[test]
fn missing_or_broken_manifest_is_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(tmp.path(), false);
    assert!(r.fatal.is_some());
    assert_eq!(r.exit_code(), 2);
    std::fs::write(tmp.path().join("manifest.json"), b"{not json").unwrap();
    let r = run(tmp.path(), false);
    assert!(r.fatal.as_deref().unwrap().contains("cannot parse"));
    assert_eq!(r.exit_code(), 2);
    std::fs::write(tmp.path().join("manifest.json"), b"{\"cases\": 1}").unwrap();
    assert_eq!(run(tmp.path(), false).exit_code(), 2);
}

#[test]
fn binary_output_and_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_ltx-spec");
    let out = Command::new(bin).arg(vectors()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout, "58 passed, 0 failed\n");

    let out = Command::new(bin).arg("-v").arg(vectors()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 58);
    assert!(
        stdout.contains("ok bad-magic-ltx2 [manifest: invalid bad-magic; ours: stream bad-magic")
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin).arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin)
        .arg("--bogus")
        .arg(vectors())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // One failing case: exit 1, a FAIL line and the closing line.
    let tmp = copy_vectors();
    let mut m = manifest(tmp.path());
    flip_sha(&mut db(&mut m, "db-4k").db.sha256);
    write_manifest(tmp.path(), &m);
    let out = Command::new(bin).arg(tmp.path()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("FAIL db-4k: sha256: expected"),
        "{stdout}"
    );
    assert_eq!(lines[1], "57 passed, 1 failed");
}

/// The paths for files too large to hold (bounded reads of the streaming
/// decoder, ranged reads instead of `LtxFile`, streamed detection, ranged
/// merges, spooled re-encodes) pass every vector too: forced with an
/// in-memory limit of 0.
#[test]
fn every_vector_passes_with_files_read_in_pieces() {
    let opts = Options {
        verbose: true,
        in_memory_limit: 0,
    };
    for dir in [vectors(), old_vectors()] {
        let r = run_with(&dir, &opts);
        assert_eq!(r.fatal, None);
        assert_no_panics(&r);
        assert_eq!(r.failed(), 0, "{:#?}", r.lines());
        assert_eq!(r.passed(), manifest(&dir).cases.len());
    }
    // The invalid cases were rejected by the ranged path, not by LtxFile.
    let r = run_with(&vectors(), &opts);
    let notes = r.lines().join("\n");
    assert!(
        notes.contains("allowed difference: page-index-mismatch from ranged reads"),
        "{notes}"
    );
}

/// A manifest read into the model and written back checks exactly the same.
#[test]
fn manifests_written_back_by_the_model_pass() {
    for from in [vectors(), old_vectors()] {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&from, tmp.path());
        let m = manifest(tmp.path());
        assert!(
            m.cases.iter().all(|e| e.case().is_some()),
            "every case parses"
        );
        write_manifest(tmp.path(), &m);
        assert_eq!(manifest(tmp.path()).cases.len(), m.cases.len());
        let r = run(tmp.path(), false);
        assert_eq!(r.failed(), 0, "{:#?}", r.lines());
        assert_eq!(r.passed(), m.cases.len());
    }
}

/// A rejected file must be rejected for the manifest's reason: a category
/// that differs fails, unless `ltx_spec::categories::ALLOWED` lists the
/// difference for that kind, path and version.
#[test]
fn a_rejection_for_another_reason_fails() {
    let tmp = copy_vectors();
    let dir = tmp.path();
    let mut m = manifest(dir);
    let n = m.cases.len();
    // Every path says bad-magic.
    *category(&mut m, "bad-magic-ltx2") = Some("truncated".into());
    // A reference-accepts case: the stream says page-order.
    *category(&mut m, "accepts-page-order-swapped") = Some("lock-page".into());
    // The allowed difference (LtxFile: page-index-mismatch for a truncated
    // file) holds for `invalid` files only.
    let Some(Case::Invalid(mut c)) = m.case("truncated-in-trailer").cloned() else {
        panic!("truncated-in-trailer")
    };
    c.common.name = Some("truncated-as-reference-accepts".into());
    m.cases.push(Case::ReferenceAccepts(c).into());
    // No category at all.
    let Some(Case::Invalid(mut c)) = m.case("bad-magic-ltx2").cloned() else {
        panic!("bad-magic-ltx2")
    };
    c.common.name = Some("no-category".into());
    c.category = None;
    m.cases.push(Case::Invalid(c).into());
    write_manifest(dir, &m);

    let r = run(dir, false);
    assert_no_panics(&r);
    let mut failed = r.failed_names();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            "accepts-page-order-swapped",
            "bad-magic-ltx2",
            "no-category",
            "truncated-as-reference-accepts",
        ]
    );
    assert_eq!(r.passed(), n + 2 - 4);
    let f = failures(&r, "bad-magic-ltx2");
    assert!(
        f.contains("the streaming decoder (whole input, 4093-byte chunks, 256-byte chunks, 7-byte chunks, 1-byte chunks) rejects it as bad-magic"),
        "{f}"
    );
    assert!(f.contains("LtxFile rejects it as bad-magic"), "{f}");
    assert!(
        f.contains("but the manifest's category is truncated"),
        "{f}"
    );
    let f = failures(&r, "accepts-page-order-swapped");
    assert!(f.contains("rejects it as page-order"), "{f}");
    assert!(f.contains("rejects it as page-index-mismatch"), "{f}");
    // Only the LtxFile path differs for the truncated file (the stream says
    // truncated), and that difference is not allowed for this kind.
    let f = failures(&r, "truncated-as-reference-accepts");
    assert!(
        f.starts_with("LtxFile rejects it as page-index-mismatch"),
        "{f}"
    );
    assert!(!f.contains("streaming decoder"), "{f}");
    assert!(failures(&r, "no-category").contains("manifest: no \"category\""));
}
