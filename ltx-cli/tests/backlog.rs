//! The compaction job's first pass over an existing bucket: every chain of
//! `testdata/conformance/chains/` (real SQLite transactions written by the
//! reference, with timestamps from 2025, older than the default retention)
//! is laid into a `file://` bucket as L0 files, in both Litestream layouts,
//! and `ltx-compactor run URL --once` runs once with the default
//! configuration. It must exit 0 with no contiguity problem, leave a bucket
//! `ltx verify URL` finds clean, restore the chain's final database byte for
//! byte, and leave nothing for a second pass to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod support;
use support::{json_of, read, run, s, sha256, vectors};

/// The `ltx-compactor` binary of this build (`cargo test --workspace`
/// builds it beside `ltx`).
fn compactor() -> PathBuf {
    let ltx = PathBuf::from(env!("CARGO_BIN_EXE_ltx"));
    let p = ltx.with_file_name("ltx-compactor");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build --release -p ltx-compactor` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// Runs one pass; returns its JSON reports (one per database; the
/// round's own line, with a `round` field, left out) and standard error.
fn pass(url: &str) -> (Value, String) {
    let o = Command::new(compactor())
        .args(["run", url, "--once", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "ltx-compactor run {url} --once: exit {:?}\n{stderr}",
        o.status.code()
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (rounds, reports): (Vec<Value>, Vec<Value>) =
        lines.into_iter().partition(|r| r.get("round").is_some());
    assert_eq!(rounds.len(), 1, "one round: {rounds:?}");
    assert_eq!(rounds[0]["ok"], true, "{}", rounds[0]);
    assert!(!reports.is_empty(), "no database reported");
    (Value::Array(reports), stderr)
}

fn chains() -> Vec<(String, PathBuf)> {
    let root = vectors("conformance");
    support::cases(&root, "chain")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let final_db = root.join(c["final_db"].as_str().unwrap());
            (name, final_db)
        })
        .collect()
}

fn lay_out(chain_dir: &Path, level_dir: &Path) -> usize {
    std::fs::create_dir_all(level_dir).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(chain_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ltx") {
            std::fs::copy(&p, level_dir.join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn one_pass_over_an_old_backlog_leaves_a_clean_bucket() {
    let chains = chains();
    assert!(chains.len() >= 3, "{chains:?}");
    for (name, final_db) in &chains {
        for level0 in ["ltx/0", "0000"] {
            let tmp = tempfile::tempdir().unwrap();
            let db = tmp.path().join("bucket").join("app.db");
            let files = lay_out(final_db.parent().unwrap(), &db.join(level0));
            assert!(files >= 2, "{name}: {files} files");
            let url = format!("file://{}", db.display());
            let what = format!("{name} in {level0}/");

            let (report, stderr) = pass(&url);
            assert!(
                !stderr.contains("contiguity") && !stderr.contains("ERROR"),
                "{what}: {stderr}"
            );
            let reports = report
                .as_array()
                .map_or(vec![&report], |a| a.iter().collect());
            for r in &reports {
                assert!(
                    r["contiguity"].as_array().is_none_or(|c| c.is_empty()),
                    "{what}: {r}"
                );
            }

            let v = run(&["verify", &url]);
            assert_eq!(v.code, 0, "{what}: ltx verify:\n{}{}", v.stdout, v.stderr);

            let out = tmp.path().join("restored.db");
            let r = run(&["restore", &url, "-o", s(&out), "--json"]);
            assert_eq!(r.code, 0, "{what}: ltx restore: {}", r.stderr);
            let j = json_of(&r);
            assert_eq!(
                sha256(&read(&out)),
                sha256(&read(final_db)),
                "{what}: restored database differs from final.db ({j})"
            );

            // Nothing is left for the next pass.
            let (again, _) = pass(&url);
            let again = again
                .as_array()
                .map_or(vec![&again], |a| a.iter().collect());
            for r in again {
                for k in ["written", "deleted"] {
                    assert!(
                        r[k].as_array().is_some_and(|a| a.is_empty()),
                        "{what}: second pass: {r}"
                    );
                }
            }
        }
    }
}
