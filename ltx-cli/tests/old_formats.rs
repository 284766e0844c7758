//! `ltx dump`, `verify`, `list`, `apply` and `compact` on files of format
//! versions 1 and 2 (testdata/conformance-old), detected automatically or
//! forced with --format-version, and on chains that mix versions.

use std::path::PathBuf;

use ltx_core::old::for_each_page;
use ltx_core::{detect, FormatVersion, Header};
use serde_json::Value;

mod support;
use support::{json_of, run, run_stdin, s, sha256 as sha_hex};

fn root() -> PathBuf {
    support::vectors("conformance-old")
}

fn manifest() -> Value {
    support::manifest(&root())
}

fn cases(kind: &str) -> Vec<Value> {
    support::cases(&root(), kind)
}

fn case(name: &str) -> Value {
    manifest()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn dump_reports_the_detected_version_and_every_page() {
    for c in cases("valid") {
        let p = root().join(c["file"].as_str().unwrap());
        let v = c["format_version"].as_u64().unwrap();
        let r = run(&["dump", s(&p)]);
        assert_eq!(r.code, 0, "{}: {}", p.display(), r.stderr);
        assert!(
            r.stdout.contains(&format!("\nversion: {v}\n")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("result: ok"), "{}", r.stdout);
        let r = run(&["dump", "--json", s(&p)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let j = json_of(&r);
        assert_eq!(j["format_version"], v);
        assert_eq!(j["format_version_source"], "detected");
        let want = c["pages"].as_array().unwrap();
        let got = j["pages"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{}", p.display());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g["pgno"], w["pgno"]);
            if let Some(o) = w.get("stream_offset") {
                assert_eq!(&g["stream_offset"], o);
                assert_eq!(g["encoding"], "lz4-stream");
            } else {
                assert_eq!(&g["frame_offset"], &w["frame_offset"]);
                assert_eq!(&g["frame_size"], &w["frame_size"]);
            }
        }
        assert_eq!(
            j["trailer"]["file_checksum"],
            c["trailer"]["file_checksum"],
            "{}",
            p.display()
        );
    }
}

#[test]
fn dump_of_standard_input_detects_or_streams_a_forced_version() {
    let p = root().join("valid/v1-snapshot-512-tiny-lz4.ltx");
    let bytes = std::fs::read(&p).unwrap();
    let r = run_stdin(&["dump", "--json", "-"], Some(bytes.clone()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_of(&r)["format_version"], 1);
    let r = run_stdin(&["dump", "--format-version", "1", "-"], Some(bytes.clone()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("version: 1 (forced"), "{}", r.stdout);
    let r = run_stdin(&["dump", "--format-version", "3", "-"], Some(bytes));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("result: FAILED (bad-header-flags)"),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_accepts_every_valid_old_file_and_rejects_every_invalid_one() {
    for dir in ["valid", "compacted"] {
        let r = run(&["verify", "--no-chain", "--json", s(&root().join(dir))]);
        assert_eq!(r.code, 0, "{dir}: {}{}", r.stdout, r.stderr);
        for f in json_of(&r)["files"].as_array().unwrap() {
            assert!(f["ok"].as_bool().unwrap(), "{f}");
            assert!(matches!(f["format_version"].as_u64(), Some(1 | 2)), "{f}");
        }
    }
    // Chains verify as chains too.
    let r = run(&["verify", s(&root().join("chains"))]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("40 files verified, 0 failed, 0 chain problems"),
        "{}",
        r.stdout
    );

    let mut n = 0;
    for kind in ["invalid", "reference-accepts"] {
        for c in cases(kind) {
            let p = root().join(c["file"].as_str().unwrap());
            let r = run(&["verify", s(&p)]);
            assert_eq!(r.code, 1, "{}: {}", p.display(), r.stdout);
            assert!(r.stdout.contains("FAIL "), "{}", r.stdout);
            assert!(
                r.stdout.contains("no format version validates this file"),
                "{}",
                r.stdout
            );
            for v in ["as v1:", "as v2:", "as v3:"] {
                assert!(r.stdout.contains(v), "{}", r.stdout);
            }
            n += 1;
        }
    }
    assert_eq!(n, 74);
}

#[test]
fn format_version_forces_a_layout() {
    let v1 = root().join("valid/v1-snapshot-512-tiny.ltx");
    let r = run(&["verify", "--format-version", "1", s(&v1)]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = run(&["verify", "--format-version", "2", s(&v1)]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("read as format v2"), "{}", r.stdout);
    let r = run(&["verify", "--format-version", "4", s(&v1)]);
    assert_eq!(r.code, 2);
}

#[test]
fn list_shows_versions_and_page_counts() {
    let r = run(&["list", "--json", s(&root().join("chains"))]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = json_of(&r);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 40);
    for c in cases("chain") {
        for step in c["steps"].as_array().unwrap() {
            let name = step["file"].as_str().unwrap();
            let row = rows
                .iter()
                .find(|r| r["path"].as_str().unwrap().ends_with(name))
                .unwrap_or_else(|| panic!("no row for {name}"));
            assert_eq!(row["format_version"], c["format_version"]);
            assert_eq!(
                row["pages"].as_u64().unwrap(),
                step["pages"].as_array().unwrap().len() as u64
            );
            assert_eq!(row["file_checksum"], step["trailer"]["file_checksum"]);
            assert_eq!(row["error"], Value::Null);
        }
    }
    let r = run(&["list", s(&root().join("chains/v2-chain-4k"))]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("VERSION"), "{}", r.stdout);
}

#[test]
fn apply_old_chains_reproduces_the_final_database() {
    for c in cases("chain") {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let mut args = vec!["apply".to_string(), "--db".into(), s(&db).into()];
        for f in c["files"].as_array().unwrap() {
            args.push(s(&root().join(f.as_str().unwrap())).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&args);
        assert_eq!(r.code, 0, "{}: {}{}", c["name"], r.stdout, r.stderr);
        let want = std::fs::read(root().join(c["final_db"].as_str().unwrap())).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), want, "{}", c["name"]);
    }
}

/// Re-encodes a v2 or v1 file as v1 without LZ4 (same header, pages and
/// post-apply checksum; a new file checksum).
fn to_v1_raw(bytes: &[u8]) -> Vec<u8> {
    let v = detect(bytes).unwrap();
    let mut pages = Vec::new();
    let s = for_each_page(bytes, v, |info, data| {
        pages.push((info.pgno, data.to_vec()));
        Ok(())
    })
    .unwrap();
    let mut h: Header = s.header;
    h.flags &= !ltx_core::old::v1::V1_FLAG_LZ4;
    ltx_core::old::v1::tests_support::v1_raw(&h, &pages, s.trailer.post_apply_checksum)
}

#[test]
fn a_chain_mixing_v1_v2_and_v3_applies_and_compacts() {
    // v2-chain-4k: file 1 as v2, files 2-4 compacted by `ltx compact` into
    // one v3 file, file 5 rewritten as v1, files 6-10 as v2.
    let c = case("v2-chain-4k");
    let files: Vec<PathBuf> = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| root().join(f.as_str().unwrap()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(&files[0], mixed.join(files[0].file_name().unwrap())).unwrap();
    let r = run(&[
        "compact",
        "-o",
        s(&mixed),
        s(&files[1]),
        s(&files[2]),
        s(&files[3]),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v1 = to_v1_raw(&std::fs::read(&files[4]).unwrap());
    assert_eq!(detect(&v1), Ok(FormatVersion::V1));
    std::fs::write(mixed.join(files[4].file_name().unwrap()), v1).unwrap();
    for f in &files[5..] {
        std::fs::copy(f, mixed.join(f.file_name().unwrap())).unwrap();
    }
    let r = run(&["list", "--json", s(&mixed)]);
    let versions: Vec<u64> = json_of(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["format_version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3, 1, 2, 2, 2, 2, 2]);
    let r = run(&["verify", s(&mixed)]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("0 chain problems"), "{}", r.stdout);

    let final_db = std::fs::read(root().join(c["final_db"].as_str().unwrap())).unwrap();
    let db = tmp.path().join("a.db");
    let r = run(&["apply", "--db", s(&db), s(&mixed)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read(&db).unwrap(), final_db);

    // Compacting the whole mixed chain gives one v3 snapshot of the same database.
    let out = tmp.path().join("all.ltx");
    let r = run(&["compact", "-o", s(&out), s(&mixed)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(detect(&bytes), Ok(FormatVersion::V3));
    let db2 = tmp.path().join("b.db");
    let r = run(&["apply", "--db", s(&db2), s(&out)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read(&db2).unwrap(), final_db);
}

#[test]
fn compact_of_old_inputs_writes_v3_with_the_reference_pages() {
    for c in cases("compaction") {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.ltx");
        let mut args = vec!["compact".to_string(), "-o".into(), s(&out).into()];
        if c["header_flags"].as_u64().unwrap() & 2 != 0 {
            args.push("--no-checksum".into());
        }
        for f in c["inputs"].as_array().unwrap() {
            args.push(s(&root().join(f.as_str().unwrap())).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&args);
        assert_eq!(r.code, 0, "{}: {}{}", c["name"], r.stdout, r.stderr);
        let r = run(&["verify", s(&out)]);
        assert_eq!(r.code, 0, "{}", r.stdout);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(detect(&bytes), Ok(FormatVersion::V3));
        let mut got = Vec::new();
        let sum = for_each_page(&bytes, FormatVersion::V3, |info, data| {
            got.push((u64::from(info.pgno), sha_hex(data)));
            Ok(())
        })
        .unwrap();
        let want: Vec<(u64, String)> = c["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pgno"].as_u64().unwrap(),
                    p["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "{}", c["name"]);
        let h = &c["header"];
        assert_eq!(u64::from(sum.header.commit), h["commit"].as_u64().unwrap());
        assert_eq!(sum.header.timestamp, h["timestamp"].as_i64().unwrap());
        assert_eq!(
            sum.trailer.post_apply_checksum.to_string(),
            c["trailer"]["post_apply_checksum"].as_str().unwrap()
        );
        assert_eq!(
            sum.header.pre_apply_checksum.to_string(),
            h["pre_apply_checksum"].as_str().unwrap()
        );
    }
}
