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
