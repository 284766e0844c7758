//! The daemon: `ltx-compactor run DIR --metrics-addr …` compacts, serves
//! Prometheus metrics and exits cleanly (0) on SIGTERM; `--dry-run` writes
//! nothing.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ltx_compactor::catalog::Layout;
use ltx_compactor::store::{now_ms, Bucket};

fn scrape(addr: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    // Transactions timestamped a few minutes ago: their windows are closed.
    let mut w = Workload::new(work.path(), 3);
    let t0 = now_ms() - 600_000;
    for i in 0..20 {
        let (txid, ltx) = w.step(t0 + i * 2_000);
        put_l0(&bucket, "app.db", Layout::LtxDir, txid, ltx).await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");

    // Dry run first: a plan is printed, nothing changes.
    let before = bucket.catalog("app.db").await.unwrap().0;
    let out = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
        .args(["run", dir.path().to_str().unwrap(), "--once", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("compactions") && text.contains("app.db"),
        "{text}"
    );
    assert_eq!(bucket.catalog("app.db").await.unwrap().0, before);
    assert!(!dir.path().join("app.db/compactor.lease").exists());

    let mut child = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
        .args(["run", dir.path().to_str().unwrap(), "--metrics-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let body = loop {
        if let Some(b) = scrape(&addr) {
            if metric(&b, "ltx_compactor_passes_total").unwrap_or(0.0) >= 1.0 {
                break b;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pass reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        metric(&body, "ltx_compactor_pass_failures_total"),
        Some(0.0)
    );
    assert!(
        metric(&body, "ltx_compactor_files_compacted_total").unwrap() >= 1.0,
        "{body}"
    );
    assert!(metric(&body, "ltx_compactor_bytes_compacted_total").unwrap() > 0.0);
    assert_eq!(metric(&body, "ltx_compactor_databases"), Some(1.0));
    // Requests by kind, every one so far and the last round's.
    assert!(
        metric(&body, "ltx_compactor_requests_total{kind=\"list\"}").unwrap() >= 1.0,
        "{body}"
    );
    assert!(metric(&body, "ltx_compactor_rounds_total").unwrap() >= 1.0);
    assert_eq!(
        metric(&body, "ltx_compactor_last_round_databases{state=\"all\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(
        metric(
            &body,
            "ltx_compactor_last_round_listing_requests{kind=\"list\"}"
        )
        .unwrap()
            >= 1.0,
        "{body}"
    );
    assert!(
        body.contains("ltx_compactor_level_lag_seconds{level=\"0\"}"),
        "{body}"
    );
    let after = bucket.catalog("app.db").await.unwrap().0;
    assert!(after.iter().any(|o| o.level >= 1), "compacted: {after:?}");

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(err.contains("shutdown requested"), "{err}");
    // Requests in the logs at info level: per database and per round.
    assert!(
        err.lines()
            .any(|l| l.contains("INFO") && l.contains("pass done") && l.contains("requests")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("INFO") && l.contains("round done") && l.contains("list")),
        "{err}"
    );
}

/// `--shard K/N`, or `--shard N` with the index of a Kubernetes Indexed
/// Job's pod: the round takes its shard's databases only; bad values are
/// refused with a message saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_from_the_job_index() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    let t0 = now_ms() - 600_000;
    let dbs = 12;
    for d in 0..dbs {
        let wd = work.path().join(d.to_string());
        std::fs::create_dir_all(&wd).unwrap();
        let mut w = Workload::new(&wd, d as u64 + 1);
        for i in 0..3 {
            let (txid, ltx) = w.step(t0 + i * 2_000);
            put_l0(&bucket, &format!("t{d}/app.db"), Layout::LtxDir, txid, ltx).await;
        }
    }
    let d = dir.path().to_str().unwrap();
    let run = |shard: &str, index: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"));
        c.args(["run", d, "--once", "--dry-run", "--json", "--shard", shard]);
        c.env_remove("JOB_COMPLETION_INDEX");
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i);
        }
        c.output().unwrap()
    };
    let mut total = 0;
    let mut seen = Vec::new();
    for k in 0..3 {
        let o = run("3", Some(&k.to_string()));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let round = lines.iter().find(|l| l.get("round").is_some()).unwrap();
        assert_eq!(round["shard"], format!("{k}/3"));
        total += round["databases"].as_u64().unwrap();
        seen.extend(
            lines
                .iter()
                .filter_map(|l| l.get("db").and_then(|d| d.as_str()).map(String::from)),
        );
    }
    assert_eq!(total, dbs as u64);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), dbs, "{seen:?}");
    // K/N needs no environment, and wins over it.
    let o = run("1/3", Some("2"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"shard\":\"1/3\""));
    for (shard, index, want) in [
        ("3", None, "JOB_COMPLETION_INDEX is not set"),
        ("3", Some("3"), "not below the count"),
        ("3/3", None, "not below the count"),
        ("a/3", None, "not a whole number"),
        ("0/0", None, "at least 1"),
    ] {
        let o = run(shard, index);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{shard} {index:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Runs `ltx-compactor run DIR --once --dry-run` under a pseudo-terminal
/// (util-linux `script`), returning what it wrote there.
fn on_a_terminal(dir: &str, no_color: Option<&str>) -> String {
    let bin = env!("CARGO_BIN_EXE_ltx-compactor");
    let mut c = Command::new("script");
    c.args([
        "-qec",
        &format!("{bin} run {dir} --once --dry-run >/dev/null"),
        "/dev/null",
    ]);
    c.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let out = c
        .output()
        .expect("util-linux `script` runs the command on a pty");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Logs on a pipe or in a file are plain text; colour only on a terminal,
/// and never with `NO_COLOR` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    let mut w = Workload::new(work.path(), 3);
    let t0 = now_ms() - 600_000;
    for i in 0..5 {
        let (txid, ltx) = w.step(t0 + i * 2_000);
        put_l0(&bucket, "app.db", Layout::LtxDir, txid, ltx).await;
    }
    let d = dir.path().to_str().unwrap();
    // Standard error to a pipe, and to a file.
    let out = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
        .args(["run", d, "--once", "--dry-run"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "nothing logged: {log}");
    assert!(!log.contains('\u{1b}'), "escape codes on a pipe: {log:?}");
    let file = work.path().join("log");
    let st = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
        .args(["run", d, "--once", "--dry-run"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let log = std::fs::read_to_string(&file).unwrap();
    assert!(log.contains("INFO") && !log.contains('\u{1b}'), "{log:?}");
    // On a terminal: colour, unless NO_COLOR says otherwise.
    let tty = on_a_terminal(d, None);
    assert!(tty.contains("INFO") && tty.contains('\u{1b}'), "{tty:?}");
    let tty = on_a_terminal(d, Some("1"));
    assert!(tty.contains("INFO") && !tty.contains('\u{1b}'), "{tty:?}");
}

/// A daemon restarted with `--state` starts where it stopped: its first
/// round loads the state its previous process wrote (after every round)
/// and finds the database idle, without a request beyond the listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_starts_from_its_state() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    let mut w = Workload::new(work.path(), 5);
    let now = now_ms();
    for i in 0..20 {
        let (txid, ltx) = w.step(now - 600_000 + i * 2_000);
        put_l0(&bucket, "app.db", Layout::LtxDir, txid, ltx).await;
    }
    let state = work.path().join("state.json");
    let first_round = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
            .args(["run", dir.path().to_str().unwrap(), "--json", "--now-ms"])
            .arg(now.to_string())
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let round: serde_json::Value = stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
            .find(|v| v.get("round").is_some())
            .expect("a round line");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(child.wait().unwrap().success());
        round
    };
    let r1 = first_round();
    assert_eq!(
        (
            r1["state"].as_str(),
            r1["due"].as_u64(),
            &r1["state_written"]
        ),
        (Some("none"), Some(1), &serde_json::Value::Bool(true)),
        "{r1}"
    );
    assert!(state.exists());
    let r2 = first_round();
    assert_eq!(r2["round"], 1, "{r2}");
    assert_eq!(r2["state"], "loaded 1 databases", "{r2}");
    assert_eq!(r2["state_loaded_databases"], 1, "{r2}");
    assert_eq!(
        (r2["idle"].as_u64(), r2["changed"].as_u64()),
        (Some(1), Some(0)),
        "{r2}"
    );
    assert_eq!(r2["requests"], r2["listing"], "{r2}");
}

/// A closed pipe on standard output (`ltx-compactor default-config | head
/// -1`, `simulate … | head`) ends the process with exit code 0 and nothing
/// on stderr, as ripgrep does, not with a panic.
#[test]
fn closed_pipe_exits_zero_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    for args in [&["default-config"][..], &["simulate", "--days", "0.05"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line is written.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: exit {status:?}, stderr: {err}");
        assert_eq!(err, "", "{args:?}: stderr on a closed pipe");
    }
}
