//! Helpers shared by the `ltx` binary's integration tests: the binary, the
//! vector sets in `testdata/` and their manifests, running a command and
//! reading its output, hashing. `kill` is the kill-at-random-moments
//! harness.
#![allow(dead_code)]

pub mod kill;
pub mod litestream;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `ltx` binary of this build.
pub fn ltx() -> Command {
    Command::cargo_bin("ltx").unwrap()
}

/// A vector set: `testdata/<set>` (`conformance`, `conformance-old`).
pub fn vectors(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(set)
}

/// The `manifest.json` of a vector set directory.
pub fn manifest(root: &Path) -> Value {
    let p = root.join("manifest.json");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// The manifest's cases of one kind (`valid`, `invalid`, `chain`, ...).
pub fn cases(root: &Path, kind: &str) -> Vec<Value> {
    manifest(root)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .cloned()
        .collect()
}

/// One finished command: exit code (-1 for a signal) and its output.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ltx ARGS`.
pub fn run(args: &[&str]) -> Run {
    run_stdin(args, None)
}

/// Runs `ltx ARGS` with `stdin` as standard input.
pub fn run_stdin(args: &[&str], stdin: Option<Vec<u8>>) -> Run {
    let mut c = ltx();
    c.args(args);
    if let Some(b) = stdin {
        c.write_stdin(b);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The JSON a run printed (panics with both streams if it is not JSON).
pub fn json_of(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr))
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// SHA-256 in hex.
pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A file's bytes (panics naming it).
pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The header fields the manifests and `--json` outputs name, in the
/// reference's order.
pub const HEADER_FIELDS: [&str; 12] = [
    "flags",
    "page_size",
    "commit",
    "min_txid",
    "max_txid",
    "timestamp",
    "pre_apply_checksum",
    "wal_offset",
    "wal_size",
    "wal_salt1",
    "wal_salt2",
    "node_id",
];
