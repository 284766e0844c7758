//! The inspect commands (`dump`, `list`, `verify`, `page`, `checksum`) run as
//! a binary against the conformance vectors in `testdata/conformance`.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::{json_of, ltx, run, run_stdin, s, sha256 as sha256_hex};

fn root() -> PathBuf {
    support::vectors("conformance")
}

fn cases(kind: &str) -> Vec<Value> {
    support::cases(&root(), kind)
}

fn path_of(rel: &Value) -> PathBuf {
    root().join(rel.as_str().unwrap())
}

/// Every (file, description) the manifest describes in full: valid cases,
/// chain steps and compaction outputs.
fn described_files() -> Vec<(PathBuf, Value)> {
    let mut v = Vec::new();
    for c in cases("valid") {
        v.push((path_of(&c["file"]), c.clone()));
    }
    for c in cases("chain") {
        for step in c["steps"].as_array().unwrap() {
            v.push((path_of(&step["file"]), step.clone()));
        }
    }
    for c in cases("compaction") {
        v.push((path_of(&c["output"]), c.clone()));
    }
    v
}

// ---------------------------------------------------------------- verify

#[test]
fn verify_accepts_every_valid_vector() {
    let files: Vec<PathBuf> = cases("valid").iter().map(|c| path_of(&c["file"])).collect();
    let mut args = vec!["verify"];
    args.extend(files.iter().map(|p| s(p)));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for f in &files {
        assert!(
            r.stdout.contains(&format!("ok   {}", f.display())),
            "{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains(&format!("{} files verified, 0 failed", files.len())),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_accepts_chain_and_compacted_directories() {
    for dir in ["chains", "compacted"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            let r = run(&["verify", "--json", s(&p)]);
            let v = json_of(&r);
            assert_eq!(r.code, 0, "{}: {}", p.display(), r.stdout);
            assert_eq!(v["ok"], true);
            assert_eq!(v["summary"]["failed"], 0);
            assert_eq!(v["chain_problems"].as_array().unwrap().len(), 0);
        }
    }
    // All at once, text output.
    let r = run(&[
        "verify",
        s(&root().join("chains")),
        s(&root().join("compacted")),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("75 files verified, 0 failed, 0 chain problems"),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_rejects_every_invalid_vector_naming_the_file() {
    let mut all = cases("invalid");
    all.extend(cases("reference-accepts"));
    assert_eq!(all.len(), 30);
    for c in &all {
        let p = path_of(&c["file"]);
        let r = run(&["verify", s(&p)]);
        assert_eq!(r.code, 1, "{}: {}{}", p.display(), r.stdout, r.stderr);
        assert!(
            r.stdout.contains(&format!("FAIL {}: ", p.display())),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("1 file verified, 1 failed"),
            "{}",
            r.stdout
        );

        let r = run(&["verify", "--json", s(&p)]);
        assert_eq!(r.code, 1);
        let v = json_of(&r);
        let f = &v["files"][0];
        assert_eq!(f["ok"], false);
        assert_eq!(f["path"], s(&p));
        assert!(f["offset"].is_u64(), "{}: no offset in {f}", p.display());
        // Same category as the manifest, except where this project is
        // stricter and finds an earlier problem: the flipped index byte is
        // caught as an index mismatch before the file checksum is compared.
        let expected = if c["name"] == "checksum-flip-page-index" {
            "page-index-mismatch"
        } else {
            c["category"].as_str().unwrap()
        };
        assert_eq!(f["category"], expected, "{}", p.display());
    }
}

#[test]
fn verify_reads_standard_input() {
    let good = std::fs::read(root().join("valid/snapshot-db-4k.ltx")).unwrap();
    let r = run_stdin(&["verify", "-"], Some(good.clone()));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("ok   -"), "{}", r.stdout);

    let bad = std::fs::read(root().join("invalid/truncated-in-page-index.ltx")).unwrap();
    let r = run_stdin(&["verify", "--json", "-"], Some(bad));
    assert_eq!(r.code, 1);
    let v = json_of(&r);
    assert_eq!(v["files"][0]["category"], "truncated");
    assert_eq!(v["files"][0]["offset"], 11068);

    let mut extra = good;
    extra.extend_from_slice(b"junk");
    let r = run_stdin(&["verify", "--json", "-"], Some(extra));
    assert_eq!(r.code, 1);
    let v = json_of(&r);
    assert_eq!(v["files"][0]["category"], "trailing-bytes");
    assert!(v["files"][0]["error"]
        .as_str()
        .unwrap()
        .contains("4 unexpected bytes"));
}

#[test]
fn verify_missing_path_is_a_usage_error() {
    let r = run(&["verify", "/nonexistent/x.ltx"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/x.ltx"), "{}", r.stderr);
}

// ---------------------------------------------------------------- chains

fn copy_chain(name: &str, dest: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dest).unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("chains").join(name)).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "ltx") {
            let d = dest.join(p.file_name().unwrap());
            std::fs::copy(&p, &d).unwrap();
            out.push(d);
        }
    }
    out.sort();
    out
}

fn chain_kinds(v: &Value) -> Vec<String> {
    v["chain_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn verify_detects_a_gap_when_a_middle_file_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_chain("chain-4k-checksums", tmp.path());
    std::fs::remove_file(&files[9]).unwrap(); // TXID 0x0a
    let r = run(&["verify", "--json", s(tmp.path())]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json_of(&r);
    assert_eq!(v["summary"]["failed"], 0);
    assert_eq!(chain_kinds(&v), vec!["gap"]);
    let msg = v["chain_problems"][0]["message"].as_str().unwrap();
    assert!(msg.contains("000000000000000a..=000000000000000a"), "{msg}");

    let r = run(&["verify", s(tmp.path())]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("CHAIN "), "{}", r.stdout);
    assert!(r.stdout.contains(": gap: "), "{}", r.stdout);
    assert!(r.stdout.contains("1 chain problems"), "{}", r.stdout);

    // --no-chain only checks files.
    assert_eq!(run(&["verify", "--no-chain", s(tmp.path())]).code, 0);
}

#[test]
fn verify_detects_an_older_file_copied_in() {
    // A compacted file covering TXIDs 2..=10 dropped into the chain.
    let tmp = tempfile::tempdir().unwrap();
    copy_chain("chain-4k-checksums", tmp.path());
    let compacted = root().join("compacted/compact-4k-2-10/0000000000000002-000000000000000a.ltx");
    std::fs::copy(&compacted, tmp.path().join(compacted.file_name().unwrap())).unwrap();
    let r = run(&["verify", "--json", s(tmp.path())]);
    assert_eq!(r.code, 1);
    let kinds = chain_kinds(&json_of(&r));
    assert!(kinds.contains(&"overlap".to_string()), "{kinds:?}");

    // An old file copied under a newer name.
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_chain("chain-4k-checksums", tmp.path());
    std::fs::copy(
        &files[2],
        tmp.path().join("000000000000001f-000000000000001f.ltx"),
    )
    .unwrap();
    let r = run(&["verify", "--json", s(tmp.path())]);
    assert_eq!(r.code, 1);
    let kinds = chain_kinds(&json_of(&r));
    assert!(kinds.contains(&"name-mismatch".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"overlap".to_string()), "{kinds:?}");
}

#[test]
fn verify_detects_checksum_links_and_missing_pages() {
    use ltx_core::checksum::DbChecksum;
    use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};

    let ps = PageSize::new(512).unwrap();
    let write =
        |dir: &Path, min: u64, commit: u32, pre: Checksum, pages: &[u32], post: Checksum| {
            let mut h = Header::new(ps, TxId(min), TxId(min));
            h.commit = commit;
            h.pre_apply_checksum = pre;
            let mut out = Vec::new();
            let mut enc = Encoder::new(h, &mut out).unwrap();
            for &p in pages {
                enc.write_page(&mut out, p, &[p as u8; 512]).unwrap();
            }
            enc.finish(&mut out, post).unwrap();
            std::fs::write(
                dir.join(ltx_core::format_filename(TxId(min), TxId(min))),
                out,
            )
            .unwrap();
        };
    let sum = |pages: &[u32]| {
        let mut c = DbChecksum::new(ps);
        for &p in pages {
            c.add(p, &[p as u8; 512]);
        }
        c.value()
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let snap = sum(&[1, 2]);
    write(d, 1, 2, Checksum(0), &[1, 2], snap);
    // Commit grows to 4 but page 3 is not in the file.
    let after2 = sum(&[1, 2, 3, 4]);
    write(d, 2, 4, snap, &[1, 4], after2);
    // Pre-apply checksum that does not follow from TXID 2.
    write(d, 3, 4, Checksum(snap.0 ^ 1), &[2], after2);

    let r = run(&["verify", "--json", s(d)]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json_of(&r);
    assert_eq!(v["summary"]["failed"], 0, "{}", r.stdout);
    assert_eq!(chain_kinds(&v), vec!["missing-pages", "checksum-link"]);
    let msg = v["chain_problems"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("from 2 to 4 pages but lacks 1 of the new pages: 3"),
        "{msg}"
    );
    // The replay stops where the database cannot be known (no second
    // report of the same problem).
    let replay = v["chains"][0]["db_checksum_replay"].as_str().unwrap();
    assert_eq!(
        replay,
        "skipped: 0000000000000002-0000000000000002.ltx: it grows the database from 2 to 4 pages \
         without holding 1 of the new pages (verified through TXID 0000000000000001)"
    );

    // Every stored field agrees, but TXID 2 does not leave the database
    // where it says: only the replay finds it, and names file and TXID.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, 1, 2, Checksum(0), &[1, 2], snap);
    let claimed = sum(&[1, 2, 3]); // page 3 holds [3; 512]...
    let mut h = Header::new(ps, TxId(2), TxId(2));
    h.commit = 3;
    h.pre_apply_checksum = snap;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    enc.write_page(&mut out, 3, &[7u8; 512]).unwrap(); // ...but not here
    enc.finish(&mut out, claimed).unwrap();
    std::fs::write(d.join("0000000000000002-0000000000000002.ltx"), out).unwrap();
    write(d, 3, 3, claimed, &[1], claimed);
    let r = run(&["verify", "--json", s(d)]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json_of(&r);
    assert_eq!(v["summary"]["failed"], 0, "{}", r.stdout);
    assert_eq!(chain_kinds(&v), vec!["db-checksum"]);
    let p = &v["chain_problems"][0];
    assert!(p["prev"]
        .as_str()
        .unwrap()
        .ends_with("0000000000000001-0000000000000001.ltx"));
    assert!(p["next"]
        .as_str()
        .unwrap()
        .ends_with("0000000000000002-0000000000000002.ltx"));
    let mut computed = DbChecksum::new(ps);
    computed.add(1, &[1u8; 512]);
    computed.add(2, &[2u8; 512]);
    computed.add(3, &[7u8; 512]);
    assert_eq!(
        p["message"].as_str().unwrap(),
        format!(
            "0000000000000002-0000000000000002.ltx (TXID 0000000000000002-0000000000000002): \
             post-apply checksum mismatch: the file says {claimed}, replaying the chain from \
             0000000000000001-0000000000000001.ltx gives {}",
            computed.value()
        )
    );
    assert!(v["chains"][0]["db_checksum_replay"]
        .as_str()
        .unwrap()
        .starts_with("failed: 0000000000000002-0000000000000002.ltx (TXID"));
    let r = run(&["verify", s(d)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains(": db-checksum: 0000000000000002-"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("1 chain problems, database checksum replayed for 0 of 1 chain"),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_says_why_a_chain_is_not_replayed() {
    // NoChecksum (Litestream's way): nothing to compare.
    let r = run(&[
        "verify",
        "--json",
        s(&root().join("chains/chain-4k-nochecksum-wal")),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = json_of(&r);
    let replay = v["chains"][0]["db_checksum_replay"].as_str().unwrap();
    assert!(
        replay.starts_with("skipped: the files have the NoChecksum flag"),
        "{replay}"
    );
    assert_eq!(v["summary"]["chains_replayed"], 0);

    // No snapshot: no known state to start from. Not an error.
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_chain("chain-4k-checksums", tmp.path());
    std::fs::remove_file(&files[0]).unwrap();
    let r = run(&["verify", "--json", s(tmp.path())]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = json_of(&r);
    assert_eq!(
        v["chains"][0]["db_checksum_replay"],
        "skipped: the chain starts at 0000000000000002-0000000000000002.ltx (TXID 0000000000000002), \
         not at a snapshot (min TXID 1): no known database to replay from"
    );
    let r = run(&["verify", s(tmp.path())]);
    assert!(
        r.stdout
            .contains("29 files: database checksum replay skipped: the chain starts at"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("database checksum replayed for 0 of 1 chain"),
        "{}",
        r.stdout
    );
    // --quiet leaves the per-chain lines out, --no-chain the replay.
    let r = run(&["verify", "-q", s(tmp.path())]);
    assert!(!r.stdout.contains("replay skipped"), "{}", r.stdout);
    let r = run(&["verify", "--no-chain", "--json", s(tmp.path())]);
    assert_eq!(json_of(&r)["chains"].as_array().unwrap().len(), 0);

    // The intact chain: verified, and a snapshot later in the directory
    // starts a chain of its own.
    let tmp = tempfile::tempdir().unwrap();
    copy_chain("chain-4k-checksums", tmp.path());
    let snap = root().join("compacted/compact-4k-1-20");
    for e in std::fs::read_dir(&snap).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ltx") {
            let d = tmp.path().join("l1");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    let r = run(&["verify", "--json", s(tmp.path())]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v = json_of(&r);
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2, "{v:#}");
    for c in chains {
        assert_eq!(c["db_checksum_replay"], "verified", "{c}");
    }
    assert_eq!(chains[0]["files"], 30);
    assert_eq!(v["summary"]["chains_replayed"], 2);
}

#[test]
fn replica_layouts_get_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let fs_root = tmp.path().join("db");
    copy_chain("chain-4k-checksums", &fs_root.join("ltx/0"));
    let l1 = fs_root.join("ltx/1");
    std::fs::create_dir_all(&l1).unwrap();
    for c in ["compact-4k-1-20", "compact-4k-11-20"] {
        for e in std::fs::read_dir(root().join("compacted").join(c)).unwrap() {
            let p = e.unwrap().path();
            if c == "compact-4k-1-20" {
                std::fs::copy(&p, l1.join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let s3_root = tmp.path().join("s3");
    copy_chain("chain-4k-checksums", &s3_root.join("0000"));

    for dir in [&fs_root, &s3_root] {
        let r = run(&["list", "--json", s(dir)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows = json_of(&r);
        let rows = rows.as_array().unwrap();
        assert!(rows.len() >= 30);
        let l0: Vec<&Value> = rows.iter().filter(|r| r["level"] == 0).collect();
        assert_eq!(l0.len(), 30);
        let keys: Vec<(u64, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["level"].as_u64().unwrap(),
                    r["min_txid"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let r = run(&["verify", s(dir)]);
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    let r = run(&["list", "--json", s(&fs_root)]);
    let rows = json_of(&r);
    let last = rows.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["level"], 1);
    assert_eq!(last["max_txid"], "0000000000000014");

    // Text: the level column.
    let r = run(&["list", s(&s3_root)]);
    let line = r.stdout.lines().nth(1).unwrap();
    assert!(
        line.trim_start().starts_with("0  0000000000000001"),
        "{line}"
    );
}

// ---------------------------------------------------------------- list

#[test]
fn list_json_of_a_chain_is_sorted_with_the_right_commits() {
    for chain in cases("chain") {
        let dir = path_of(&chain["files"][0]).parent().unwrap().to_path_buf();
        let r = run(&["list", "--json", s(&dir)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows = json_of(&r);
        let rows = rows.as_array().unwrap();
        let steps = chain["steps"].as_array().unwrap();
        assert_eq!(rows.len(), steps.len());
        for (row, step) in rows.iter().zip(steps) {
            assert_eq!(row["path"], s(&path_of(&step["file"])));
            assert_eq!(row["level"], Value::Null);
            assert_eq!(row["commit"], step["db_pages"]);
            for k in support::HEADER_FIELDS {
                assert_eq!(row[k], step["header"][k], "{k}");
            }
            assert_eq!(
                row["post_apply_checksum"],
                step["trailer"]["post_apply_checksum"]
            );
            assert_eq!(row["file_checksum"], step["trailer"]["file_checksum"]);
            assert_eq!(row["pages"], step["pages"].as_array().unwrap().len());
            assert_eq!(row["file_size"], step["file_size"]);
            assert_eq!(row["error"], Value::Null);
        }
    }
}

#[test]
fn list_tsv_and_table() {
    let dir = root().join("chains/chain-512-checksums");
    let r = run(&["list", "--tsv", s(&dir)]);
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 13);
    let header: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(header[0], "level");
    assert_eq!(header[1], "min_txid");
    assert_eq!(*header.last().unwrap(), "error");
    let first: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(first.len(), header.len());
    assert_eq!(first[1], "0000000000000001");

    let r = run(&["list", s(&dir)]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("LEVEL  MIN_TXID"), "{}", r.stdout);
}

#[test]
fn list_reports_unparseable_files_and_exits_1() {
    let good = root().join("valid/snapshot-db-4k.ltx");
    let bad = root().join("invalid/truncated-in-trailer.ltx");
    let r = run(&["list", "--json", s(&good), s(&bad)]);
    assert_eq!(r.code, 1);
    let rows = json_of(&r);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let bad_row = rows.iter().find(|r| r["path"] == s(&bad)).unwrap();
    assert!(bad_row["error"]["message"].is_string());
    assert!(r.stderr.contains(s(&bad)), "{}", r.stderr);
    let r = run(&["list", s(&good), s(&bad)]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.lines().next().unwrap().ends_with("ERROR"));
}

// ---------------------------------------------------------------- dump

fn check_dump_json(v: &Value, desc: &Value, what: &str) {
    assert_eq!(v["format_version"], 3, "{what}");
    assert_eq!(v["ok"], true, "{what}: {v}");
    assert_eq!(v["error"], Value::Null);
    let want = desc["header"].as_object().unwrap();
    assert_eq!(want.len(), 12);
    for (k, expected) in want {
        assert_eq!(&v["header"][k], expected, "{what}: header.{k}");
    }
    assert!(v["header"]["timestamp_rfc3339"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    for k in ["post_apply_checksum", "file_checksum"] {
        assert_eq!(v["trailer"][k], desc["trailer"][k], "{what}: trailer.{k}");
    }
    assert_eq!(v["page_index_size"], desc["page_index_size"], "{what}");
    assert_eq!(v["file_size"], desc["file_size"], "{what}");
    let pages = desc["pages"].as_array().unwrap();
    assert_eq!(v["page_count"], pages.len(), "{what}");
    let got = v["pages"].as_array().unwrap();
    assert_eq!(got.len(), pages.len(), "{what}");
    for (g, w) in got.iter().zip(pages) {
        for k in ["pgno", "flags", "frame_offset", "frame_size"] {
            assert_eq!(g[k], w[k], "{what}: page {k}");
        }
    }
    let index = v["page_index"]["entries"].as_array().unwrap();
    assert_eq!(index.len(), pages.len());
    for (e, w) in index.iter().zip(pages) {
        assert_eq!(e["offset"], w["frame_offset"]);
        assert_eq!(e["size"], w["frame_size"]);
    }
}

#[test]
fn dump_json_carries_every_manifest_field() {
    let files = described_files();
    assert!(files.len() > 60);
    for (p, desc) in &files {
        let r = run(&["dump", "--json", s(p)]);
        assert_eq!(r.code, 0, "{}: {}", p.display(), r.stderr);
        check_dump_json(&json_of(&r), desc, &p.display().to_string());
    }
}

#[test]
fn dump_text_shows_header_trailer_index_and_pages() {
    let p = root().join("chains/chain-4k-nochecksum-wal/0000000000000002-0000000000000002.ltx");
    let r = run(&["dump", s(&p)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "version: 3",
        "flags: 0x00000002 (NoChecksum)",
        "page_size: 4096",
        "timestamp: 2025-01-15T12:01:29.814Z (1736942489814 ms)",
        "wal_offset: 61832",
        "wal_salt1: ",
        "pages:",
        "page index: 1 entries",
        "trailer:",
        "file_checksum: ",
        "result: ok",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    // Pages are listed, not hexdumped, by default.
    assert!(!r.stdout.contains("00000000: "), "{}", r.stdout);
}

#[test]
fn dump_hexdumps_one_page_on_request() {
    let p = root().join("valid/snapshot-db-4k.ltx");
    let r = run(&["dump", "--page", "1", "--hexdump", s(&p)]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains("00000000: 5351 4c69 7465 2066 6f72 6d61 7420 3300  SQLite format 3."),
        "{}",
        r.stdout
    );
    // Only page 1 is listed.
    assert!(!r.stdout.contains("\n         2  0x0001"), "{}", r.stdout);

    let r = run(&["dump", "--json", "--page", "2", "--hexdump", s(&p)]);
    let v = json_of(&r);
    let pages = v["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 1);
    let data = hex::decode(pages[0]["data_hex"].as_str().unwrap()).unwrap();
    let want = cases("valid")
        .into_iter()
        .find(|c| c["name"] == "snapshot-db-4k")
        .unwrap();
    assert_eq!(sha256_hex(&data), want["pages"][1]["sha256"]);

    let r = run(&["dump", "--page", "99", s(&p)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("page 99 is not in this file"),
        "{}",
        r.stderr
    );
}

#[test]
fn dump_of_a_truncated_file_prints_what_it_can_then_the_error() {
    let p = root().join("invalid/truncated-in-page-frame.ltx");
    let r = run(&["dump", s(&p)]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("header:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("min_txid: 0000000000000002"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("result: FAILED (truncated)"),
        "{}",
        r.stdout
    );
    // The first page decoded before the cut.
    assert!(
        r.stdout.contains("         1  0x0001  block"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains(s(&p)), "{}", r.stderr);
    assert!(r.stderr.contains("at byte offset 929"), "{}", r.stderr);

    let r = run(&["dump", "--json", s(&p)]);
    assert_eq!(r.code, 1);
    let v = json_of(&r);
    assert_eq!(v["ok"], false);
    assert_eq!(v["header"]["commit"], 15);
    assert_eq!(v["pages"].as_array().unwrap().len(), 1);
    assert_eq!(v["error"]["category"], "truncated");
    assert_eq!(v["error"]["offset"], 929);
    assert!(v["error"]["message"].as_str().unwrap().contains("929"));
}

#[test]
fn dump_shows_an_invalid_header_as_stored() {
    let p = root().join("invalid/bad-header-flags-0x1.ltx");
    let r = run(&["dump", s(&p)]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("header (INVALID, as stored):"));
    assert!(r.stdout.contains("unknown-0x00000001"));
    assert!(r.stderr.contains("at byte offset 4"), "{}", r.stderr);
    let r = run(&["dump", "--json", s(&p)]);
    let v = json_of(&r);
    assert_eq!(v["header_valid"], false);
    assert_eq!(v["header"]["flags"], 1);
    assert_eq!(v["error"]["category"], "bad-header-flags");
    assert_eq!(v["error"]["pgno"], Value::Null);
}

#[test]
fn dump_every_invalid_vector_fails_with_an_offset() {
    let mut all = cases("invalid");
    all.extend(cases("reference-accepts"));
    for c in all {
        let p = path_of(&c["file"]);
        let r = run(&["dump", "--json", s(&p)]);
        assert_eq!(r.code, 1, "{}", p.display());
        let v = json_of(&r);
        assert!(v["error"]["offset"].is_u64(), "{}: {v}", p.display());
        assert!(r.stderr.contains(s(&p)));
    }
}

#[test]
fn dump_reads_standard_input() {
    let desc = cases("valid")
        .into_iter()
        .find(|c| c["name"] == "legacy-snapshot-db-512")
        .unwrap();
    let bytes = std::fs::read(path_of(&desc["file"])).unwrap();
    let r = run_stdin(&["dump", "--json", "-"], Some(bytes));
    assert_eq!(r.code, 0, "{}", r.stderr);
    check_dump_json(&json_of(&r), &desc, "stdin");

    let bad = std::fs::read(root().join("invalid/truncated-in-page-index.ltx")).unwrap();
    let r = run_stdin(&["dump", "-"], Some(bad));
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("(11 frames)"), "{}", r.stdout);
    assert!(r.stderr.contains("-: at byte offset 11068"), "{}", r.stderr);
}

// ---------------------------------------------------------------- page

#[test]
fn page_extracts_pages_matching_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("page.bin");
    for (p, desc) in described_files() {
        let pages = desc["pages"].as_array().unwrap();
        // First, last and one in the middle.
        let picks: Vec<&Value> = match pages.len() {
            0 => vec![],
            n => vec![&pages[0], &pages[n / 2], &pages[n - 1]],
        };
        for page in picks {
            let pgno = page["pgno"].to_string();
            let r = run(&["page", s(&p), &pgno, "-o", s(&out)]);
            assert_eq!(r.code, 0, "{} {pgno}: {}", p.display(), r.stderr);
            let data = std::fs::read(&out).unwrap();
            assert_eq!(
                data.len(),
                desc["header"]["page_size"].as_u64().unwrap() as usize
            );
            assert_eq!(
                sha256_hex(&data),
                page["sha256"],
                "{} page {pgno}",
                p.display()
            );
        }
    }
}

#[test]
fn page_raw_hexdump_json_and_stdin() {
    let desc = cases("valid")
        .into_iter()
        .find(|c| c["name"] == "incremental-db-4k")
        .unwrap();
    let p = path_of(&desc["file"]);
    let page = &desc["pages"][1];
    let pgno = page["pgno"].to_string();

    let o = ltx()
        .args(["page", "--raw", s(&p), &pgno])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(sha256_hex(&o.stdout), page["sha256"]);

    let r = run(&["page", s(&p), &pgno]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("00000000: "), "{}", r.stdout);

    let r = run(&["page", "--json", s(&p), &pgno]);
    let v = json_of(&r);
    assert_eq!(v["pgno"], page["pgno"]);
    assert_eq!(v["frame_offset"], page["frame_offset"]);
    assert_eq!(v["frame_size"], page["frame_size"]);
    assert_eq!(v["encoding"], "block");

    let bytes = std::fs::read(&p).unwrap();
    let mut c = ltx();
    c.args(["page", "--raw", "-", &pgno]).write_stdin(bytes);
    let o = c.output().unwrap();
    assert!(o.status.success());
    assert_eq!(sha256_hex(&o.stdout), page["sha256"]);
}

#[test]
fn page_not_in_file_says_which_pages_it_has() {
    let p = root().join("chains/chain-4k-checksums/0000000000000002-0000000000000002.ltx");
    let r = run(&["page", s(&p), "3"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "page 3 is not in this file; it has 11 pages in 1..=15: 1-2, 4-8, 11-12, 14-15"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn page_falls_back_to_scanning_when_the_index_is_damaged() {
    let c = cases("reference-accepts")
        .into_iter()
        .find(|c| c["name"] == "accepts-page-index-wrong-offset")
        .unwrap();
    let p = path_of(&c["file"]);
    let page = &c["reference_decoded"]["pages"][3];
    let o = ltx()
        .args(["page", "--raw", s(&p), &page["pgno"].to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(sha256_hex(&o.stdout), page["sha256"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot use the page index"));
}

// ---------------------------------------------------------------- checksum

#[test]
fn checksum_of_databases_matches_the_manifest() {
    for c in cases("db") {
        let p = path_of(&c["file"]);
        let r = run(&["checksum", s(&p)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, format!("{}\n", c["checksum"].as_str().unwrap()));

        let v = json_of(&run(&["checksum", "--json", s(&p)]));
        assert_eq!(v["checksum"], c["checksum"]);
        assert_eq!(v["pages"], c["pages"]);
        assert_eq!(v["page_size"], c["page_size"]);

        let r = run(&["checksum", "--pages", s(&p)]);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len() as u64, c["pages"].as_u64().unwrap() + 1);
        assert!(lines[0].starts_with("1 "));
        // The per-page values XOR to the total.
        let x = lines[..lines.len() - 1].iter().fold(0u64, |acc, l| {
            acc ^ u64::from_str_radix(l.split(' ').nth(1).unwrap(), 16).unwrap()
        });
        assert_eq!(format!("{:016x}", x | 1 << 63), lines[lines.len() - 1]);
    }
    // Chain final databases against the last step's checksum.
    for c in cases("chain") {
        let p = path_of(&c["final_db"]);
        let last = c["steps"].as_array().unwrap().last().unwrap();
        let r = run(&["checksum", s(&p)]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout.trim(), last["db_checksum"], "{}", p.display());
    }
}

#[test]
fn checksum_of_an_empty_database_is_zero_and_non_databases_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let r = run(&["checksum", s(&empty)]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, "0000000000000000\n");

    let r = run(&["checksum", s(&root().join("valid/snapshot-db-4k.ltx"))]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("snapshot-db-4k.ltx"), "{}", r.stderr);

    // A torn database: one byte short of whole pages.
    let torn = tmp.path().join("torn.db");
    let mut b = std::fs::read(root().join("db/db-512.db")).unwrap();
    b.pop();
    std::fs::write(&torn, b).unwrap();
    let r = run(&["checksum", s(&torn)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("torn.db"), "{}", r.stderr);
}

#[test]
fn checksum_skips_the_lock_page() {
    // A sparse database of 64 KiB pages reaching past the lock page
    // (0x40000000 / 65536 + 1 = 16385), with garbage in the lock page: the
    // result must not include it.
    use std::os::unix::fs::FileExt;
    let ps = ltx_core::PageSize::new(65536).unwrap();
    let lock = u64::from(ps.lock_pgno());
    assert_eq!(lock, 16385);
    let pages = lock + 2;
    let mut page1 = vec![0u8; 65536];
    page1[..100].copy_from_slice(&std::fs::read(root().join("db/db-512.db")).unwrap()[..100]);
    page1[16..18].copy_from_slice(&1u16.to_be_bytes()); // 1 means 65536
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("big.db");
    {
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(pages * 65536).unwrap();
        f.write_all_at(&page1, 0).unwrap();
        f.write_all_at(&[0xAB; 65536], (lock - 1) * 65536).unwrap();
    }
    // One run: the per-page list leaves the lock page out, and the total is
    // the XOR of exactly the listed pages.
    let r = run(&["checksum", "--json", "--pages", s(&p)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_of(&r);
    let listed = v["page_checksums"].as_array().unwrap();
    assert_eq!(listed.len() as u64, pages - 1);
    assert!(listed.iter().all(|e| e["pgno"] != lock));
    let x = listed.iter().fold(0u64, |acc, e| {
        acc ^ u64::from_str_radix(e["checksum"].as_str().unwrap(), 16).unwrap()
    });
    assert_eq!(v["checksum"], format!("{:016x}", x | 1 << 63));
    // Page 1 as the library computes it.
    let c1 = ltx_core::checksum::page_checksum(1, &page1);
    assert_eq!(listed[0]["checksum"], c1.to_string());
}

/// Names Litestream does not read (upper-case hex, `000a` level
/// directories) are not part of a replica, locally or as a bucket: skipped
/// with a note, never a gap; and a real hole is still reported.
#[test]
fn names_litestream_ignores_are_ignored_and_said_so() {
    let chain = root().join("chains/chain-4k-checksums");
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("db/ltx/0");
    std::fs::create_dir_all(&l0).unwrap();
    for t in 1..=3 {
        let n = format!("{t:016x}-{t:016x}.ltx");
        std::fs::copy(chain.join(&n), l0.join(&n)).unwrap();
    }
    // TXID 10 under an upper-case name, and TXID 4 under a level "000a".
    std::fs::copy(
        chain.join("000000000000000a-000000000000000a.ltx"),
        l0.join("000000000000000A-000000000000000A.ltx"),
    )
    .unwrap();
    let odd = tmp.path().join("db/000a");
    std::fs::create_dir_all(&odd).unwrap();
    let n4 = "0000000000000004-0000000000000004.ltx";
    std::fs::copy(chain.join(n4), odd.join(n4)).unwrap();
    let db = tmp.path().join("db");
    let url = format!("file://{}", db.display());
    for target in [s(&db), url.as_str()] {
        let r = run(&["verify", target]);
        assert_eq!(r.code, 0, "{target}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("000000000000000A-000000000000000A.ltx")
                && r.stderr.contains("Litestream does not read it either"),
            "{target}: {}",
            r.stderr
        );
        let l = json_of(&run(&["list", "--json", target]));
        // (A local listing also shows stray files outside the layout, with
        // no level: `000a/` is not a level directory.)
        let maxes: Vec<&str> = l
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["level"].is_null())
            .filter_map(|r| r["max_txid"].as_str())
            .collect();
        assert!(l.as_array().unwrap().iter().all(|r| !r["path"]
            .as_str()
            .unwrap_or("")
            .contains("000a/")
            || r["level"].is_null()));
        assert_eq!(
            maxes,
            ["0000000000000001", "0000000000000002", "0000000000000003"],
            "{target}: {l}"
        );
    }
    // A real hole: TXID 3 removed, 4 in the right place.
    std::fs::remove_file(l0.join("0000000000000003-0000000000000003.ltx")).unwrap();
    std::fs::copy(chain.join(n4), l0.join(n4)).unwrap();
    for target in [s(&db), url.as_str()] {
        let r = run(&["verify", target]);
        assert_eq!(r.code, 1, "{target}: a hole must be reported: {}", r.stdout);
    }
}

/// A level's file that starts right after a file of a finer level (the
/// restore path runs 9 → 0 → 2) is no gap, locally or as a bucket; without
/// that finer file it is.
#[test]
fn a_level_file_after_a_finer_file_is_no_gap() {
    let chain = root().join("chains/chain-4k-checksums");
    let name = |a: u64, b: u64| format!("{a:016x}-{b:016x}.ltx");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    for l in ["0", "2", "9"] {
        std::fs::create_dir_all(db.join("ltx").join(l)).unwrap();
    }
    let compact = |out: PathBuf, from: u64, to: u64| {
        let mut a: Vec<String> = vec!["compact".into(), "-o".into(), s(&out).into()];
        a.extend((from..=to).map(|t| s(&chain.join(name(t, t))).to_string()));
        let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    compact(db.join("ltx/9").join(name(1, 13)), 1, 13);
    std::fs::copy(
        chain.join(name(14, 14)),
        db.join("ltx/0").join(name(14, 14)),
    )
    .unwrap();
    compact(db.join("ltx/2").join(name(15, 17)), 15, 17);
    let url = format!("file://{}", db.display());
    for target in [s(&db), url.as_str()] {
        let r = run(&["verify", target]);
        assert_eq!(r.code, 0, "{target}: {}{}", r.stdout, r.stderr);
    }
    std::fs::remove_file(db.join("ltx/0").join(name(14, 14))).unwrap();
    for target in [s(&db), url.as_str()] {
        let r = run(&["verify", target]);
        assert_eq!(
            r.code, 1,
            "{target}: the hole at 14 must be reported: {}",
            r.stdout
        );
    }
}

/// A reader that closes the pipe early (`ltx dump … | head -1`) ends the
/// command quietly with exit 0, as `cat`, `grep` and ripgrep do: no
/// "Broken pipe" error on stderr, no exit 1 for a pipeline that worked.
#[test]
fn closed_pipe_exits_zero_quietly() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let file = root().join("valid/snapshot-db-4k.ltx");
    // More than a pipe buffer (64 KiB) of output, so the writes after the
    // reader goes away really fail with EPIPE.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ltx"))
        .args(["dump", "--hexdump", "--no-squeeze"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "no first line");
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}, stderr: {err}");
    assert_eq!(err, "", "stderr on a closed pipe");
}

/// One chain checker: the same replica, damaged in several ways, verified
/// as a directory (`ltx verify DIR`) and as a `file://` bucket (`ltx verify
/// URL`), reports the same problems (kind and file) both ways.
#[test]
fn verify_reports_the_same_chain_problems_for_a_directory_and_a_bucket() {
    // (kind, file name) of every chain problem, sorted; `restore` (a URL's
    // own check, no directory has it) left out.
    fn dir_problems(v: &Value) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = v["chain_problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].as_str().unwrap().to_string(), base(&p["next"])))
            .collect();
        out.sort();
        out
    }
    fn url_problems(v: &Value) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = v["databases"][0]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] != "restore")
            .map(|p| (p["kind"].as_str().unwrap().to_string(), base(&p["key"])))
            .collect();
        out.sort();
        out
    }
    fn base(v: &Value) -> String {
        v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
    }
    let name = |a: u64, b: u64| ltx_core::format_filename(ltx_core::TxId(a), ltx_core::TxId(b));
    // Each case: how to damage the replica, the problems it must show.
    type Damage = fn(&Path);
    type Case = (&'static str, Damage, Vec<(&'static str, String)>);
    let cases: Vec<Case> = vec![
        ("healthy", |_| {}, vec![]),
        (
            // L0 files 2..=10 compacted away: level 1 bridges the hole.
            "compacted",
            |l0| {
                for t in 2..=10u64 {
                    std::fs::remove_file(l0.join(ltx_core::format_filename(
                        ltx_core::TxId(t),
                        ltx_core::TxId(t),
                    )))
                    .unwrap();
                }
            },
            vec![],
        ),
        (
            "gap",
            |l0| std::fs::remove_file(l0.join("000000000000000c-000000000000000c.ltx")).unwrap(),
            vec![("gap", name(0xd, 0xd))],
        ),
        (
            // An old file copied under a newer name: it overlaps the file
            // it copies.
            "copied",
            |l0| {
                std::fs::copy(
                    l0.join("000000000000000c-000000000000000c.ltx"),
                    l0.join("000000000000001f-000000000000001f.ltx"),
                )
                .unwrap();
            },
            vec![
                ("name-mismatch", name(0x1f, 0x1f)),
                ("overlap", name(0x1f, 0x1f)),
            ],
        ),
        (
            // The same with a file inside level 1's range: redundant, only
            // its name is wrong.
            "copied-inside-level-1",
            |l0| {
                std::fs::copy(
                    l0.join("0000000000000003-0000000000000003.ltx"),
                    l0.join("000000000000001f-000000000000001f.ltx"),
                )
                .unwrap();
            },
            vec![("name-mismatch", name(0x1f, 0x1f))],
        ),
        (
            // A pre-apply checksum that follows neither file ending before
            // it (L0 0x0a and L1 2-10): two checksum links (the file itself
            // fails its file checksum).
            "pre-apply",
            |l0| {
                let p = l0.join("000000000000000b-000000000000000b.ltx");
                let mut b = std::fs::read(&p).unwrap();
                b[47] ^= 1; // the low byte of the pre-apply checksum
                std::fs::write(&p, b).unwrap();
            },
            vec![
                ("checksum-link", name(0xb, 0xb)),
                ("checksum-link", name(0xb, 0xb)),
            ],
        ),
    ];
    for (what, damage, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("app.db/ltx");
        let l0 = db.join("0");
        copy_chain("chain-4k-checksums", &l0);
        std::fs::create_dir_all(db.join("1")).unwrap();
        let compacted = root().join("compacted/compact-4k-2-10").join(name(2, 10));
        std::fs::copy(&compacted, db.join("1").join(name(2, 10))).unwrap();
        damage(&l0);
        let want: Vec<(String, String)> = want.into_iter().map(|(k, f)| (k.into(), f)).collect();

        let r = run(&["verify", "--json", s(tmp.path())]);
        let dir = dir_problems(&json_of(&r));
        assert_eq!(dir, want, "{what}: directory: {}", r.stdout);
        let url = format!("file://{}", tmp.path().display());
        let r = run(&["verify", "--json", &url]);
        assert_eq!(
            url_problems(&json_of(&r)),
            want,
            "{what}: bucket: {}",
            r.stdout
        );
        assert_eq!(r.code, if want.is_empty() { 0 } else { 1 }, "{what}");
    }
}
