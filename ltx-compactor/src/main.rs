//! `ltx-compactor`: compaction and restore planning for LTX files.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ltx_compactor::policy::Config;
use ltx_compactor::simulate::{self, Ladder, SimParams, Workload};

/// `println!` for this binary's standard output: a closed pipe
/// (`ltx-compactor default-config | head -3`) ends the process quietly with
/// exit code 0, as ripgrep does, instead of a panic. Ending a run there is
/// safe: outputs are create-only PUTs never half-written, and leases held
/// expire after their TTL (see [`write_line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

mod run;
mod svg;

/// Writes one line to standard output (see `outln!`): exits 0 on a closed
/// pipe, 2 with a message on any other write error.
fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("ltx-compactor: writing to standard output: {e}");
        std::process::exit(2);
    }
}

#[derive(Parser)]
#[command(
    name = "ltx-compactor",
    version,
    about = "Time-tiered compaction and point-in-time restore of LTX files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LadderArg {
    /// Our policy with `--config` (cumulative by default).
    Ours,
    /// Our policy in ladder shape with `--ladder-config`.
    OursLadder,
    /// A model of Litestream's default ladder.
    Litestream,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkloadArg {
    Default,
    Random,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the policy with a simulated clock over synthetic L0 traffic, in
    /// both shapes (cumulative and ladder), and compare it with Litestream's
    /// default ladder.
    Simulate {
        /// Simulated days.
        #[arg(long, default_value_t = 7.0)]
        days: f64,
        /// L0 files (transactions) per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Policy configuration (JSON); default: the built-in ladder.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Configuration of the ladder-shape run (JSON; its shape is forced to
        /// ladder); default: Litestream's intervals and L0 retention
        /// (`Config::litestream_ladder`) with `--config`'s retention.
        #[arg(long)]
        ladder_config: Option<PathBuf>,
        /// Run only this ladder (default: all three).
        #[arg(long, value_enum)]
        ladder: Option<LadderArg>,
        /// Traffic shape.
        #[arg(long, value_enum, default_value = "default")]
        workload: WorkloadArg,
        /// Initial database size in pages (4 KiB).
        #[arg(long, default_value_t = 25_000)]
        db_pages: u32,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Draw restore-plan size and bytes per level to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Print the default configuration as JSON.
    DefaultConfig,
    /// Compact one database, or every database under a root (found by one
    /// listing of the root: keys `<db>/ltx/<level>/…` or `<db>/<%04x>/…`).
    Run {
        /// s3://bucket/prefix, gs://…, az://…, file:///dir, a path, memory://name.
        url: String,
        /// Take only the databases of one shard: `K/N` (shard K of N,
        /// 0 <= K < N), or `N` alone to take K from $JOB_COMPLETION_INDEX
        /// (a Kubernetes Indexed Job). A database's shard is a stable hash
        /// of its prefix (FNV-1a, jump consistent hash): N workers given
        /// 0/N … N-1/N split a root with no coordinator; leases still guard
        /// each database if shards overlap.
        #[arg(long)]
        shard: Option<String>,
        /// One pass over every database, then exit (cron, Kubernetes CronJob).
        #[arg(long)]
        once: bool,
        /// Keep what the rounds know (every database's files and header
        /// timestamps) at LOCATION between runs: read at start (one GET),
        /// written after every round (one PUT; a local file is replaced
        /// atomically), so that the next run (a CronJob's `--once`, a
        /// restarted daemon) costs what changed, not a first round. A local
        /// path, file:///…, or an object URL (s3://bucket/key, gs://…,
        /// az://…); one per worker: with --shard, give each shard its own
        /// (e.g. s3://b/state/shard-$(JOB_COMPLETION_INDEX).json). A
        /// missing, unreadable or foreign state (another root, shard or
        /// format version) is a warning and a first round; a failed write
        /// is a warning.
        #[arg(long, value_name = "LOCATION")]
        state: Option<String>,
        /// Print the plan; write and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Policy configuration (JSON, see `default-config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Databases compacted at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Lease holder name (default: host name and process ID).
        #[arg(long)]
        holder: Option<String>,
        /// Lease time to live ("30s", "2m", or milliseconds).
        #[arg(long, default_value = "60s")]
        lease_ttl: String,
        /// Print each pass report as one JSON line on stdout.
        #[arg(long)]
        json: bool,
        /// Outputs above this many bytes use a multipart upload.
        #[arg(long, default_value_t = 16 << 20)]
        single_put_limit: usize,
        /// Multipart part size in bytes (S3 needs at least 5 MiB).
        #[arg(long, default_value_t = 8 << 20, hide = true)]
        part_size: usize,
        /// Policy clock override, ms since the epoch (tests, replays).
        #[arg(long, hide = true)]
        now_ms: Option<i64>,
        /// Accept the level files another compactor wrote (a pass refuses
        /// to run beside one: Litestream with its own compaction on). Give
        /// it once, after that compactor was stopped.
        #[arg(long)]
        adopt: bool,
    },
}

fn load_config(config: Option<PathBuf>) -> Result<Config> {
    match config {
        Some(p) => {
            let s =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_json(&s)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("in {}", p.display()))
        }
        None => Ok(Config::default()),
    }
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and
/// never when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
/// Logs sent to a file, a pipe or a collector are plain text.
fn log_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            url,
            shard,
            once,
            state,
            dry_run,
            config,
            concurrency,
            metrics_addr,
            holder,
            lease_ttl,
            json,
            single_put_limit,
            part_size,
            now_ms,
            adopt,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(log_colour(
                    std::io::stderr().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                ))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let cfg = load_config(config)?;
            let shard = shard
                .map(|s| {
                    let index = std::env::var(ltx_compactor::fleet::JOB_COMPLETION_INDEX).ok();
                    ltx_compactor::fleet::Shard::parse(&s, index.as_deref())
                        .map_err(anyhow::Error::msg)
                })
                .transpose()?;
            let state = state
                .map(|s| ltx_compactor::store::StateLocation::open(&s))
                .transpose()?;
            let lease_ttl_ms = ltx_compactor::policy::duration_serde::parse(&lease_ttl)
                .filter(|&t| t >= 1000)
                .ok_or_else(|| {
                    anyhow::anyhow!("--lease-ttl {lease_ttl:?}: expected a duration of at least 1s")
                })?;
            let holder = holder.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "host".into());
                format!("{host}-{}", std::process::id())
            });
            let args = run::RunArgs {
                url,
                cfg,
                metrics_addr,
                json,
                opts: ltx_compactor::compact::PassOptions {
                    dry_run,
                    adopt,
                    single_put_limit,
                    part_size,
                    ..Default::default()
                },
                run: ltx_compactor::daemon::RunOptions {
                    once,
                    concurrency,
                    holder,
                    lease_ttl_ms,
                    now_ms,
                    shard,
                    state,
                    on_pass: None,
                    on_round: None,
                },
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if !rt.block_on(run::run(args))? {
                std::process::exit(1);
            }
        }
        Cmd::DefaultConfig => {
            outln!("{}", serde_json::to_string_pretty(&Config::default())?);
        }
        Cmd::Simulate {
            days,
            rate,
            config,
            ladder_config,
            ladder,
            workload,
            db_pages,
            seed,
            json,
            svg: svg_out,
        } => {
            if !(rate > 0.0 && rate <= 1000.0 && days > 0.0 && days <= 60.0) {
                bail!("--rate must be in (0, 1000] and --days in (0, 60]");
            }
            if db_pages < 16 {
                bail!("--db-pages must be at least 16");
            }
            let cfg = load_config(config)?;
            let ladder_cfg = match ladder_config {
                Some(p) => load_config(Some(p))?,
                None => Config {
                    retention: cfg.retention,
                    ..Config::litestream_ladder()
                },
            };
            let ladders: Vec<Ladder> = match ladder {
                None => vec![Ladder::Ours, Ladder::OursLadder, Ladder::Litestream],
                Some(LadderArg::Ours) => vec![Ladder::Ours],
                Some(LadderArg::OursLadder) => vec![Ladder::OursLadder],
                Some(LadderArg::Litestream) => vec![Ladder::Litestream],
            };
            let params = SimParams {
                days,
                rate,
                workload: match workload {
                    WorkloadArg::Default => Workload::Default,
                    WorkloadArg::Random => Workload::Random,
                },
                db_pages,
                seed,
                ..SimParams::default()
            };
            let report = simulate::run_with(&params, &cfg, &ladder_cfg, &ladders);
            if let Some(p) = svg_out {
                svg::draw(&report, &p)?;
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for r in report.ladders() {
                    outln!(
                        "{:<11} max_restore_files {:>3} (compacted targets {:>3})  mean_restore_files {:>6.2}  bytes_stored {:>14}  bytes_written {:>15}  files_stored {:>6}  written/day {:>7.0} (copies {})  deleted/day {:>7.0}",
                        r.ladder, r.max_restore_files, r.max_restore_files_compacted, r.mean_restore_files, r.bytes_stored, r.bytes_written, r.files_stored, r.objects_written_per_day, r.copies, r.deletions_per_day
                    );
                    for p in &r.problems {
                        outln!("  problem: {p}");
                    }
                }
                for (name, x, mean) in [
                    (
                        "ours",
                        report.bytes_stored_ratio,
                        report.mean_bytes_stored_ratio,
                    ),
                    (
                        "ours-ladder",
                        report.ladder_bytes_stored_ratio,
                        report.ladder_mean_bytes_stored_ratio,
                    ),
                ] {
                    if let Some(x) = x {
                        outln!(
                            "bytes_stored {name}/litestream: {x:.2} (mean over the run: {:.2})",
                            mean.unwrap_or(0.0)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new("1"))));
    }
}
