//! The runner over the reference vectors, and proof that it notices
//! differences: a copy of the vectors with a doctored manifest must fail
//! exactly the doctored cases.

use std::path::{Path, PathBuf};
use std::process::Command;

use ltx_spec::{run, Report};
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance")
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
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

fn write_manifest(dir: &Path, m: &Value) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

fn case_mut<'a>(m: &'a mut Value, name: &str) -> &'a mut Value {
    m["cases"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn push_case(m: &mut Value, c: Value) {
    m["cases"].as_array_mut().unwrap().push(c);
}

/// Changes the last hex digit of a hex string.
fn flip_hex(v: &mut Value) {
    let s = v.as_str().unwrap();
    let last = s.chars().last().unwrap();
    let new = if last == '0' { '1' } else { '0' };
    *v = Value::String(format!("{}{new}", &s[..s.len() - 1]));
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

#[test]
fn reference_vectors_all_pass() {
    let n = manifest(&vectors())["cases"].as_array().unwrap().len();
    // testdata/conformance/README.md: 4 chain + 9 compaction + 3 db + 24
    // invalid + 6 reference-accepts + 12 valid.
    assert_eq!(n, 58);
    let r = run(&vectors(), true);
    assert_eq!(r.fatal, None);
    for l in r.lines() {
        eprintln!("{l}");
    }
    assert_eq!(r.failed(), 0, "{:?}", r.failed_names());
    assert_eq!(r.passed(), n);
    assert_eq!(r.summary(), format!("{n} passed, 0 failed"));
    assert_eq!(r.exit_code(), 0);
}

fn old_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance-old")
}

#[test]
fn old_format_vectors_all_pass() {
    let n = manifest(&old_vectors())["cases"].as_array().unwrap().len();
    // testdata/conformance-old/README.md: 125 cases of format versions 1 and 2.
    assert_eq!(n, 125);
    let r = run(&old_vectors(), true);
    assert_eq!(r.fatal, None);
    for l in r.lines() {
        eprintln!("{l}");
    }
    assert_eq!(r.failed(), 0, "{:?}", r.failed_names());
    assert_eq!(r.summary(), format!("{n} passed, 0 failed"));
    assert_no_panics(&r);
}

#[test]
fn doctored_old_manifest_fails_exactly_the_doctored_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_dir(&old_vectors(), dir);
    let mut m = manifest(dir);
    let n = m["cases"].as_array().unwrap().len();
    // A v1 LZ4 page's stream offset, a v2 frame size, a v1 chain step's
    // database, a v2 compaction's page, a format version swapped (v1 file
    // read as v2), and an invalid v2 case pointing at a valid v2 file.
    {
        let c = case_mut(&mut m, "v1-snapshot-4k-lz4");
        let o = c["pages"][2]["stream_offset"].as_u64().unwrap();
        c["pages"][2]["stream_offset"] = json!(o + 1);
    }
    {
        let c = case_mut(&mut m, "v2-snapshot-4k");
        let o = c["pages"][1]["frame_size"].as_u64().unwrap();
        c["pages"][1]["frame_size"] = json!(o + 1);
    }
    flip_hex(&mut case_mut(&mut m, "v1-chain-4k-lz4")["steps"][3]["db_sha256"]);
    flip_hex(&mut case_mut(&mut m, "v2-compact-4k-2-10")["pages"][1]["sha256"]);
    case_mut(&mut m, "v1-snapshot-512-tiny-lz4")["format_version"] = json!(2);
    case_mut(&mut m, "v2-bad-magic")["file"] = json!("valid/v2-snapshot-4k.ltx");
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
    let n = m["cases"].as_array().unwrap().len();

    // Expected values changed.
    flip_hex(&mut case_mut(&mut m, "snapshot-db-4k")["pages"][3]["sha256"]);
    {
        let c = case_mut(&mut m, "incremental-db-4k");
        let t = c["header"]["timestamp"].as_i64().unwrap();
        c["header"]["timestamp"] = json!(t + 1);
    }
    flip_hex(&mut case_mut(&mut m, "compact-4k-2-10")["header"]["pre_apply_checksum"]);
    flip_hex(&mut case_mut(&mut m, "compact-4k-11-20")["pages"][2]["sha256"]);
    flip_hex(&mut case_mut(&mut m, "compact-4k-1-20")["db_after"]["sha256"]);
    flip_hex(&mut case_mut(&mut m, "db-512")["checksum"]);
    flip_hex(&mut case_mut(&mut m, "chain-512-checksums")["steps"][4]["db_sha256"]);
    flip_hex(&mut case_mut(&mut m, "edge-4k-empty-snapshot")["trailer"]["file_checksum"]);
    {
        let c = case_mut(&mut m, "legacy-snapshot-db-512");
        let o = c["pages"][0]["frame_offset"].as_u64().unwrap();
        c["pages"][0]["frame_offset"] = json!(o + 1);
    }
    {
        let c = case_mut(&mut m, "snapshot-db-512");
        let s = c["page_index_size"].as_u64().unwrap();
        c["page_index_size"] = json!(s + 1);
    }
    case_mut(&mut m, "crafted-literal-only-blocks")["encoding"] = json!("legacy-frame");
    // An "invalid" case whose file is actually valid.
    case_mut(&mut m, "bad-magic-ltx2")["file"] = json!("valid/snapshot-db-4k.ltx");

    // A damaged vector file (a flipped byte in the header's timestamp).
    let f = dir.join("valid/incremental-db-512-txid-range.ltx");
    let mut b = std::fs::read(&f).unwrap();
    b[39] ^= 1;
    std::fs::write(&f, b).unwrap();

    // New cases: an unknown kind, an unsupported format version, a missing
    // file; and two that must still pass: garbage rejected as invalid, and a
    // valid case with an unknown field.
    push_case(
        &mut m,
        json!({"name": "future-kind", "kind": "wal-segment", "file": "x"}),
    );
    let mut v2 = case_mut(&mut m, "snapshot-db-4k-full-vacuum-nochecksum").clone();
    v2["name"] = json!("v4-case");
    v2["format_version"] = json!(4);
    push_case(&mut m, v2);
    push_case(
        &mut m,
        json!({"name": "missing-file", "kind": "valid", "file": "valid/nope.ltx"}),
    );
    std::fs::write(
        dir.join("garbage.ltx"),
        b"LTX1 this is not an LTX file at all",
    )
    .unwrap();
    push_case(
        &mut m,
        json!({"name": "garbage", "kind": "invalid", "category": "truncated", "file": "garbage.ltx"}),
    );
    let mut extra = case_mut(&mut m, "snapshot-db-4k-full-vacuum-nochecksum").clone();
    extra["name"] = json!("with-unknown-field");
    extra["some_future_field"] = json!({"nested": [1, 2, 3]});
    push_case(&mut m, extra);
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
    write_manifest(tmp.path(), &m);
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
         "db_after": {"pages": 1, "sha256": "00", "checksum": "0000000000000000"}},
        {"name": "chain-junk", "kind": "chain", "steps": [{}], "final_db": 7},
        {"name": "chain-none", "kind": "chain"},
        {"name": "compaction-junk", "kind": "compaction", "inputs": [123]},
        {"name": "compaction-junk-input", "kind": "compaction", "inputs": ["junk.bin"]},
        {"name": "compaction-no-inputs", "kind": "compaction"},
        {"name": "db-bad-page-size", "kind": "db", "file": "junk.bin", "page_size": 1000},
        {"name": "db-no-file", "kind": "db"},
    ]});
    write_manifest(dir, &m);
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
    flip_hex(&mut case_mut(&mut m, "db-4k")["sha256"]);
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
