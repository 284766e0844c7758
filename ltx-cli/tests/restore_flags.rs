//! `ltx restore`'s flags for scripts and container entrypoints
//! (`--if-db-not-exists`, `--if-replica-exists`, `--integrity-check
//! none|quick|full`) and what it reports for time targets, on a bucket
//! directory holding a conformance chain (real SQLite transactions).

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::{json_of, read, run, s, sha256, vectors};

/// The manifest's case of the chain `chain-4k-checksums`.
fn chain_case() -> Value {
    support::cases(&vectors("conformance"), "chain")
        .into_iter()
        .find(|c| c["name"] == "chain-4k-checksums")
        .unwrap()
}

/// The chain `chain-4k-checksums` as L0 files of `<tmp>/bucket/app.db`;
/// returns the database directory and the manifest's steps.
fn bucket(tmp: &Path) -> (PathBuf, Vec<Value>) {
    let root = vectors("conformance");
    let chain = chain_case();
    let db = tmp.join("bucket/app.db");
    let l0 = db.join("ltx/0");
    std::fs::create_dir_all(&l0).unwrap();
    let steps = chain["steps"].as_array().unwrap().clone();
    for st in &steps {
        let f = root.join(st["file"].as_str().unwrap());
        std::fs::copy(&f, l0.join(f.file_name().unwrap())).unwrap();
    }
    (db, steps)
}

fn header_ts(step: &Value) -> i64 {
    step["header"]["timestamp"].as_i64().unwrap()
}

#[test]
fn if_db_not_exists_and_if_replica_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = bucket(tmp.path());
    let out = tmp.path().join("out.db");
    std::fs::write(&out, b"keep me").unwrap();
    let r = run(&["restore", s(&db), "-o", s(&out), "--if-db-not-exists"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing restored"), "{}", r.stderr);
    assert_eq!(read(&out), b"keep me");
    // Without the flag an existing OUT is a usage error.
    assert_eq!(run(&["restore", s(&db), "-o", s(&out)]).code, 2);

    // No database at the URL: an empty directory, a missing one.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = tmp.path().join("missing");
    let fresh = tmp.path().join("fresh.db");
    for url in [
        s(&empty).to_string(),
        format!("file://{}", missing.display()),
    ] {
        let r = run(&["restore", &url, "-o", s(&fresh), "--if-replica-exists"]);
        assert_eq!(r.code, 0, "{url}: {}", r.stderr);
        assert!(r.stderr.contains("no replica"), "{url}: {}", r.stderr);
        assert!(!fresh.exists());
        let r = run(&["restore", &url, "-o", s(&fresh)]);
        assert_ne!(
            r.code, 0,
            "{url}: without the flag, no database is an error"
        );
    }
    // With a database there, the flag restores as usual.
    let r = run(&["restore", s(&db), "-o", s(&fresh), "--if-replica-exists"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(fresh.exists());
}

#[test]
fn integrity_check_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = bucket(tmp.path());
    let out = tmp.path().join("out.db");
    for (args, line, level) in [
        (
            vec!["--integrity-check"],
            Some("integrity_check: ok"),
            "full",
        ),
        (
            vec!["--integrity-check", "full"],
            Some("integrity_check: ok"),
            "full",
        ),
        (
            vec!["--integrity-check", "quick"],
            Some("quick_check: ok"),
            "quick",
        ),
        (vec!["--integrity-check", "none"], None, "none"),
        (vec![], None, "none"),
    ] {
        let mut a = vec!["restore", s(&db), "-o", s(&out), "--force"];
        a.extend(&args);
        let r = run(&a);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        match line {
            Some(l) => assert!(r.stdout.contains(l), "{args:?}: {}", r.stdout),
            None => assert!(!r.stdout.contains("_check: ok"), "{args:?}: {}", r.stdout),
        }
        a.push("--json");
        let j = json_of(&run(&a));
        assert_eq!(j["integrity_check_level"], level, "{args:?}");
    }
    assert_ne!(
        run(&[
            "restore",
            s(&db),
            "-o",
            s(&out),
            "--force",
            "--integrity-check",
            "deep"
        ])
        .code,
        0
    );
}

#[test]
fn time_targets_say_where_they_landed() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, steps) = bucket(tmp.path());
    let out = tmp.path().join("out.db");
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let restore = |ms: i64| {
        let t = rfc(ms);
        let args = [
            "restore",
            s(&db),
            "-o",
            s(&out),
            "--force",
            "--timestamp",
            &t,
        ];
        let text = run(&args);
        assert_eq!(text.code, 0, "{t}: {}", text.stderr);
        let mut a = args.to_vec();
        a.push("--json");
        (text.stdout, json_of(&run(&a)))
    };
    // Exactly at a transaction's header time: that transaction.
    let k = 5;
    let (text, j) = restore(header_ts(&steps[k]));
    assert_eq!(j["txid"], format!("{:016x}", k + 1));
    assert_eq!(j["behind_requested_ms"], 0);
    assert!(text.contains("at exactly that time"), "{text}");
    // Between two: the earlier one, and by how much.
    let mid = header_ts(&steps[k]) + 1;
    let (text, j) = restore(mid);
    assert_eq!(j["txid"], format!("{:016x}", k + 1));
    assert_eq!(j["behind_requested_ms"], 1);
    assert_eq!(j["newest_at_or_before_requested"], true);
    assert!(text.contains("0.001 s older than requested"), "{text}");
    // After the newest transaction: the latest state, said so.
    let last = steps.len();
    let after = header_ts(&steps[last - 1]) + 60_000;
    let (text, j) = restore(after);
    assert_eq!(j["txid"], format!("{last:016x}"));
    assert_eq!(j["behind_requested_ms"], 60_000);
    assert_eq!(j["requested"]["kind"], "timestamp");
    assert!(text.contains("after the newest transaction"), "{text}");
    let final_db = vectors("conformance").join(chain_case()["final_db"].as_str().unwrap());
    assert_eq!(sha256(&read(&out)), sha256(&read(&final_db)));
    // Before the first: an error naming the earliest.
    let r = run(&[
        "restore",
        s(&db),
        "-o",
        s(&out),
        "--force",
        "--timestamp",
        &rfc(header_ts(&steps[0]) - 1),
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("earliest"), "{}", r.stderr);
}
