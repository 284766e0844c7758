//! `ltx-spec [-v] [--in-memory-limit BYTES] DIR`: checks ltx-core against the vectors in `DIR/manifest.json`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ltx-spec [-v|--verbose] [--in-memory-limit BYTES] DIR\n\nChecks every case of DIR/manifest.json with ltx-core. Prints `FAIL <name>: ...`\nfor each failing case (and `ok <name>` with -v), then `N passed, N failed`.\nLTX files up to --in-memory-limit bytes (default 67108864) are read whole,\nlarger ones in bounded pieces; databases of any size are built in\ntemporary files.\nExit status: 0 all passed, 1 some failed, 2 usage or I/O error.";

fn main() -> ExitCode {
    let mut opts = ltx_spec::Options::default();
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-v" | "--verbose") => opts.verbose = true,
            Some("--in-memory-limit") => match args.next().and_then(|v| v.to_str()?.parse().ok()) {
                Some(n) => opts.in_memory_limit = n,
                None => {
                    eprintln!("ltx-spec: --in-memory-limit needs a number of bytes\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
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
    let report = ltx_spec::run_with(&dir, &opts);
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
