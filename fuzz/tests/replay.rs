//! Replays every committed input through the fuzz target bodies, without
//! libFuzzer: `cargo test --release` in fuzz/ (stable, no RUSTC_BOOTSTRAP).
//!
//! For each target: corpus/<target>/, regressions/<target>/, and for the two
//! targets that take whole LTX files, seeds/ltx/. A failing input is named
//! with its path, its panic message, and a hex preview.
//!
//! `FUZZ_REPLAY=path` replays just that file or directory, for every target
//! whose name appears in the path (or all targets if none does).

use std::panic;
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target, &[&str])] = &[
    ("decoder", ltx_fuzz::decoder::run, &["seeds/ltx"]),
    (
        "random_access",
        ltx_fuzz::random_access::run,
        &["seeds/ltx"],
    ),
    ("page_index", ltx_fuzz::page_index::run, &[]),
    ("merge", ltx_fuzz::merge::run, &[]),
    ("header", ltx_fuzz::header::run, &[]),
    (
        "old_formats",
        ltx_fuzz::old_formats::run,
        &[
            "../testdata/conformance-old/valid",
            "../testdata/conformance-old/invalid",
        ],
    ),
    ("restore_plan", ltx_fuzz::restore_plan::run, &[]),
    ("listing", ltx_fuzz::listing::run, &[]),
    ("wal", ltx_fuzz::wal::run, &[]),
];

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return out;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            !n.starts_with('.') && !n.eq_ignore_ascii_case("README.md")
        }) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn replay(name: &str, f: Target, dirs: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    let mut n = 0;
    for dir in dirs {
        for path in files_under(dir) {
            let data = std::fs::read(&path).unwrap();
            n += 1;
            if let Err(e) = panic::catch_unwind(|| f(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let preview: String = data.iter().take(64).map(|b| format!("{b:02x}")).collect();
                failures.push(format!(
                    "{name}: {} ({} bytes, starts {preview}): {msg}",
                    path.display(),
                    data.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{name}: replayed {n} inputs");
    n
}

fn run_target(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_, f, extra) = TARGETS.iter().find(|t| t.0 == name).unwrap();
    if let Ok(p) = std::env::var("FUZZ_REPLAY") {
        let any = TARGETS.iter().any(|t| p.contains(t.0));
        if !any || p.contains(name) {
            replay(name, *f, &[PathBuf::from(p)]);
        }
        return;
    }
    let mut dirs = vec![
        root.join("corpus").join(name),
        root.join("regressions").join(name),
    ];
    dirs.extend(extra.iter().map(|d| root.join(d)));
    replay(name, *f, &dirs);
}

#[test]
fn replay_decoder() {
    run_target("decoder");
}

#[test]
fn replay_random_access() {
    run_target("random_access");
}

#[test]
fn replay_page_index() {
    run_target("page_index");
}

#[test]
fn replay_merge() {
    run_target("merge");
}

#[test]
fn replay_header() {
    run_target("header");
}

#[test]
fn replay_old_formats() {
    run_target("old_formats");
}

#[test]
fn replay_restore_plan() {
    run_target("restore_plan");
}

#[test]
fn replay_listing() {
    run_target("listing");
}

#[test]
fn replay_wal() {
    run_target("wal");
}

/// The target bodies themselves on a few hand-made inputs (so the test
/// exercises them even with empty corpora).
#[test]
fn smoke() {
    let valid = ltx_core::doc_example_file();
    for (_, f, _) in TARGETS {
        f(&[]);
        f(&[0]);
        f(&valid);
        f(&valid[..valid.len() - 1]);
        let mut v = valid.clone();
        v.push(0);
        f(&v);
        f(&[0xff; 300]);
    }
    // decoder control-byte mode: one byte at a time, and chunks of 3 then 97*2.
    let mut ctl = vec![0x00];
    ctl.extend_from_slice(&valid);
    ltx_fuzz::decoder::run(&ctl);
    let mut ctl = vec![0x12, 2, 0x81];
    ctl.extend_from_slice(&valid);
    ltx_fuzz::decoder::run(&ctl);
    // merge: every flag combination of the first byte.
    for g in 0..=255u8 {
        let mut m = vec![g, 0];
        m.extend((0..200u32).map(|i| (i * 37 + u32::from(g)) as u8));
        ltx_fuzz::merge::run(&m);
    }
}
