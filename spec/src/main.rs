//! `ltx-spec [-v] DIR`: checks ltx-core against the vectors in `DIR/manifest.json`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ltx-spec [-v|--verbose] DIR\n\nChecks every case of DIR/manifest.json with ltx-core. Prints `FAIL <name>: ...`\nfor each failing case (and `ok <name>` with -v), then `N passed, N failed`.\nExit status: 0 all passed, 1 some failed, 2 usage or I/O error.";

fn main() -> ExitCode {
    let mut verbose = false;
    let mut dir: Option<PathBuf> = None;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("-v" | "--verbose") => verbose = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                eprintln!("ltx-spec: unknown option {s}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("ltx-spec: more than one directory given\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let report = ltx_spec::run(&dir, verbose);
    if let Some(e) = &report.fatal {
        eprintln!("ltx-spec: {e}");
        return ExitCode::from(report.exit_code());
    }
    for line in report.lines() {
        println!("{line}");
    }
    println!("{}", report.summary());
    ExitCode::from(report.exit_code())
}
