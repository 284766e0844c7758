#!/usr/bin/env python3
"""Fleet benchmark: one `ltx-compactor run` daemon over a root of many tiny
databases, on `file://` and on an S3 server (moto), for the first round and a
steady-state round; and the same for another build (today's per-level
listing, `--baseline`).

usage: python3 ltx-compactor/benches/fleet.py [--dbs 10000] [--backends file,s3]
           [--baseline BIN] [--work DIR] [--concurrency 16] [--json OUT] [--once-state]

  --dbs N          databases in the root (default 10,000).
  --backends       file, s3 or both (default both; s3 needs AWS_ENDPOINT and the
                   other exports of `.ci/s3.sh start`, bucket LTX_TEST_S3_BUCKET).
  --baseline BIN   another ltx-compactor binary to run the same way (e.g. main's
                   build, copied aside before building this branch).
  --work DIR       scratch directory (default target/bench/fleet); file roots go there.
  --concurrency C  the daemon's --concurrency (default 16).
  --moto-log PATH  the S3 server's access log, one line per request (default
                   target/moto.log, where .ci/s3.sh writes it): an independent
                   count of each round's requests on S3.
  --json OUT       write the results there too.
  --once-state     instead of the daemon, `--once` runs (a CronJob's), each a new
                   process: a first run with `--state WORK/<backend>-state.json`,
                   then a second run over the unchanged root without `--state`
                   (every header read again) and one with it, then one with it
                   after 1 % of the databases got one more L0 file. Per run:
                   wall time, peak RSS (the process's ru_maxrss), requests by
                   kind, and the state's size and load/save times (its log).
                   Needs GNU time (/usr/bin/time) for the peak RSS.

What it does, per backend and binary: builds a fresh root with
`examples/fleet.rs` (N databases `t00000/app.db` …, each a 2-page snapshot and
4 L0 files, in the layout Litestream uses there: `ltx/<level>/` on file,
`%04x` on S3; real LTX files), starts `BIN run URL --json --now-ms NOW
--concurrency C` (a daemon: a round at every 30-s slot boundary + 1 s; the
policy clock fixed, so every run plans the same), and watches its stdout:

- round 1 (first pass): from the start of the process to the end of the round;
- round 2 (idle): nothing changed since round 1, timed from its slot
  boundary to its end;
- then, between two rounds, 1 % of the databases get one more L0 file
  (`fleet touch`); the next round is the steady-state round, timed from its
  slot boundary to its end;
- peak RSS: the daemon's VmHWM after each round (/proc/PID/status);
- requests by kind: this branch prints a round report (`"round"` line,
  `requests`); the baseline prints only per-database reports, so its round's
  requests are their sum plus what they leave out: its discovery (a
  delimiter listing of the root, 1 page per 1,000 entries, and one of each
  `tNNNNN/` and `tNNNNN/app.db/` prefix) and, on S3, each lease's release
  (one PUT per database). On S3 the server's access log gives an independent
  total (`moto_requests`);
- cost per day at 30-s passes (2,880 a day), S3 Standard us-east-1 request
  prices: LIST, PUT, COPY, POST (multipart) $0.005 per 1,000; GET, HEAD and
  the rest (DELETE included, which AWS does not charge: an upper bound)
  $0.0004 per 1,000.

Logs go to WORK/<backend>-<tool>.log (RUST_LOG=warn for both binaries, so
that neither pays for a log line per database).
"""

import argparse
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KINDS = ["list", "get", "get_range", "head", "put", "multipart_part", "copy", "delete"]
EXPENSIVE = {"list", "put", "multipart_part", "copy"}
SLOT_MS, SETTLE_MS = 30_000, 1_000
PER_DAY = 24 * 3600 * 1000 // SLOT_MS


def cost_per_day(req):
    """Dollars a day for `req` (requests of one round) at one round per 30 s."""
    dollars = 0.0
    for k in KINDS:
        price = 0.005 if k in EXPENSIVE else 0.0004
        dollars += req.get(k, 0) * price / 1000
    return dollars * PER_DAY


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def add(a, b):
    return {k: a.get(k, 0) + b.get(k, 0) for k in KINDS}


def moto_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def moto_count(lines):
    """Requests in the server's access-log lines, by kind (GETs whole or
    ranged alike: the log has no Range header). Only the daemon talks to
    the server while a round runs, and deletions are `POST /bucket?delete`
    lines naming no key, so every line of the window counts."""
    out = {"total": 0, "list": 0, "get": 0, "head": 0, "put": 0,
           "multipart_part": 0, "post": 0, "delete": 0}
    for raw in lines:
        line = ANSI.sub("", raw.decode("utf-8", "replace"))
        try:
            req = line.split('"')[1].split(" ")
            method, target = req[0], req[1]
        except IndexError:
            continue
        out["total"] += 1
        if method == "GET" and ("list-type=" in target or "delimiter=" in target):
            out["list"] += 1
        elif method == "PUT" and "partNumber=" in target:
            out["multipart_part"] += 1
        elif method == "POST" and target.endswith("?delete"):
            out["delete"] += 1
        elif method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            out[method.lower()] += 1
    return out


class Daemon:
    """A running `ltx-compactor run` whose stdout lines are timestamped."""

    def __init__(self, cmd, log):
        self.log = open(log, "w")
        env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
        self.start = time.time()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            self.q.put((time.time(), obj))
        self.q.put((time.time(), None))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class Rounds:
    """Splits a daemon's stdout into rounds: a `round` line ends one (this
    branch), or every N database reports (a build without round reports)."""

    def __init__(self, daemon, dbs, has_rounds):
        self.d, self.dbs, self.has_rounds = daemon, dbs, has_rounds

    def next(self, timeout):
        reports, deadline = [], time.time() + timeout
        while True:
            t, obj = self.d.q.get(timeout=max(1, deadline - time.time()))
            if obj is None:
                raise RuntimeError("the daemon exited: see its log")
            if "round" in obj:
                return t, obj, reports
            reports.append(obj)
            if not self.has_rounds and len(reports) == self.dbs:
                return t, None, reports


def next_start_ms(now_s):
    now = int(now_s * 1000)
    return (now // SLOT_MS + 1) * SLOT_MS + SETTLE_MS


def discovery(dbs):
    """List requests of the baseline's discovery of `tNNNNN/app.db/` roots."""
    return math.ceil(dbs / 1000) + 2 * dbs


def run_one(args, backend, tool, binary):
    stamp = time.strftime("%Y%m%d%H%M%S")
    if backend == "file":
        root = os.path.join(args.work, f"{backend}-{tool}")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        url, layout, prefix = root, "ltx", None
    else:
        bucket = os.environ.get("LTX_TEST_S3_BUCKET", "ltx-test")
        prefix = f"fleet-{tool}-{stamp}"
        url, layout = f"s3://{bucket}/{prefix}", "hex"
    now_ms = (int(time.time()) // 60 + 60) * 60_000
    example = os.path.join(ROOT, "target/release/examples/fleet")
    common = ["--dbs", str(args.dbs), "--now-ms", str(now_ms), "--layout", layout]
    t = time.time()
    built = json.loads(subprocess.check_output([example, "build", url] + common))
    print(f"[{backend}/{tool}] built {built['objects']} objects in {time.time() - t:.1f} s", file=sys.stderr)

    log = os.path.join(args.work, f"{backend}-{tool}.log")
    cmd = [binary, "run", url, "--json", "--now-ms", str(now_ms),
           "--concurrency", str(args.concurrency), "--holder", "bench"]
    moto_before = len(moto_lines(args.moto_log)) if prefix else 0
    d = Daemon(cmd, log)
    rounds = Rounds(d, args.dbs, tool == "this")
    result = {"backend": backend, "tool": tool, "url": url, "dbs": args.dbs}
    try:
        t1, r1, reports1 = rounds.next(timeout=7200)
        rss1 = vm_hwm_kb(d.p.pid)
        moto1 = moto_lines(args.moto_log) if prefix else []
        result["first"] = summarize(backend, r1, reports1, t1 - d.start, rss1, args.dbs,
                                    moto_count(moto1[moto_before:]) if prefix else None)
        print(f"[{backend}/{tool}] first round: {json.dumps(result['first'])}", file=sys.stderr)
        # One round with nothing changed: what a round costs when every
        # database is idle (a build that remembers nothing across rounds
        # reads again what it wrote in the first).
        mark = len(moto_lines(args.moto_log)) if prefix else 0
        start_ms = next_start_ms(time.time())
        t2, r2, reports2 = rounds.next(timeout=7200)
        result["idle"] = summarize(backend, r2, reports2, t2 - start_ms / 1000, vm_hwm_kb(d.p.pid),
                                   args.dbs, moto_count(moto_lines(args.moto_log)[mark:]) if prefix else None)
        print(f"[{backend}/{tool}] idle round: {json.dumps(result['idle'])}", file=sys.stderr)
        slice_ = 0
        while True:
            now = time.time()
            start_ms = next_start_ms(now)
            margin = 5 if backend == "file" else 20
            if start_ms / 1000 - now < margin:
                # Too close to the next round to touch before it: let it run.
                rounds.next(timeout=7200)
                continue
            touched = json.loads(subprocess.check_output(
                [example, "touch", url] + common + ["--slice", str(slice_)]))
            if time.time() * 1000 >= start_ms:
                print(f"[{backend}/{tool}] touch ran into the round, again", file=sys.stderr)
                rounds.next(timeout=7200)
                slice_ += 1
                continue
            mark = len(moto_lines(args.moto_log)) if prefix else 0
            t2, r2, reports2 = rounds.next(timeout=7200)
            rss2 = vm_hwm_kb(d.p.pid)
            moto2 = moto_count(moto_lines(args.moto_log)[mark:]) if prefix else None
            result["touched"] = touched["objects"]
            result["steady"] = summarize(backend, r2, reports2, t2 - start_ms / 1000, rss2,
                                         args.dbs, moto2)
            print(f"[{backend}/{tool}] steady round: {json.dumps(result['steady'])}", file=sys.stderr)
            break
    finally:
        d.stop()
    errors = [l for l in open(log) if " ERROR " in l]
    result["errors"] = len(errors)
    return result


def once(binary, url, now_ms, args, state, log):
    """One `--once` run, a new process: (round line, pass lines, wall s,
    peak RSS kB, state log fields)."""
    cmd = [binary, "run", url, "--once", "--json", "--now-ms", str(now_ms),
           "--concurrency", str(args.concurrency), "--holder", "bench"]
    if state:
        cmd += ["--state", state]
    env = dict(os.environ, RUST_LOG="warn,ltx_compactor::daemon=info", NO_COLOR="1")
    out_path, rss_path = log + ".out", log + ".rss"
    # GNU time forks the run from its own small image: the child's
    # ru_maxrss starts from there, not from this (large) Python process's.
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_path] + cmd
    with open(out_path, "w") as out, open(log, "w") as err:
        t = time.time()
        status = subprocess.call(cmd, stdout=out, stderr=err, env=env)
        wall = time.time() - t
    if status != 0:
        raise RuntimeError(f"{cmd} exited {status}: see {log}")
    rss_kb = int(open(rss_path).read().split()[-1])
    lines = [json.loads(l) for l in open(out_path) if l.strip()]
    rounds = [l for l in lines if "round" in l]
    passes = [l for l in lines if "round" not in l]
    info = {}
    for line in open(log):
        for what in ("state loaded", "state written"):
            if what in line:
                fields = dict(re.findall(r"(\w+)=(\d+)", line))
                info[what.replace(" ", "_")] = {k: int(v) for k, v in fields.items()}
    return rounds[0], passes, wall, rss_kb, info


def run_once_state(args, backend, binary):
    """`--once` runs with and without `--state` over one root (see the usage)."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    if backend == "file":
        root = os.path.join(args.work, f"{backend}-once")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        url, layout = root, "ltx"
        state = os.path.join(args.work, f"{backend}-state.json")
        if os.path.exists(state):
            os.remove(state)
    else:
        bucket = os.environ.get("LTX_TEST_S3_BUCKET", "ltx-test")
        url, layout = f"s3://{bucket}/fleet-once-{stamp}", "hex"
        state = f"s3://{bucket}/fleet-once-{stamp}-state/state.json"
    now_ms = (int(time.time()) // 60 + 60) * 60_000
    example = os.path.join(ROOT, "target/release/examples/fleet")
    common = ["--dbs", str(args.dbs), "--now-ms", str(now_ms), "--layout", layout]
    subprocess.check_output([example, "build", url] + common)
    result = {"backend": backend, "tool": "once", "url": url, "dbs": args.dbs}
    log = lambda name: os.path.join(args.work, f"{backend}-once-{name}.log")
    for name, slug, st, touch in [("first (--state)", "first", state, False),
                                  ("second, no --state", "second-no-state", None, False),
                                  ("second, --state", "second-state", state, False),
                                  ("steady (1 % changed), --state", "steady-state", state, True)]:
        if touch:
            result["touched"] = json.loads(subprocess.check_output(
                [example, "touch", url] + common + ["--slice", "0"]))["objects"]
        r, passes, wall, rss, info = once(binary, url, now_ms, args, st, log(slug))
        x = summarize(backend, r, passes, wall, rss, args.dbs, None)
        x["state"] = r.get("state")
        x.update(info)
        result[name] = x
        print(f"[{backend}/once] {name}: {json.dumps(x)}", file=sys.stderr)
    return result


def summarize(backend, r, reports, wall_s, rss_kb, dbs, moto):
    out = {"wall_s": round(wall_s, 2), "peak_rss_mb": round(rss_kb / 1024, 1)}
    if r is not None:
        out["requests"] = r["requests"]
        out["listing"] = r["listing"]
        out["keys"] = r["keys"]
        out["elapsed_s"] = r["elapsed_ms"] / 1000
        for k in ("databases", "idle", "changed", "due", "failed"):
            out[k] = r[k]
    else:
        req = {k: 0 for k in KINDS}
        for p in reports:
            req = add(req, p["requests"])
        req["list"] += discovery(dbs)
        if backend == "s3":
            req["put"] += len(reports)  # lease releases
        out["requests"] = req
        out["databases"] = len(reports)
    out["total"] = sum(out["requests"].values())
    out["cost_per_day_usd"] = round(cost_per_day(out["requests"]), 2)
    if moto is not None:
        out["moto_requests"] = moto
    return out


def table(results):
    lines = ["| backend | build | round | wall s | peak RSS MB | list | get | get_range | head | put | copy | delete | total | $ / day at 30-s rounds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for which in ("first", "idle", "steady", "first (--state)", "second, no --state",
                      "second, --state", "steady (1 % changed), --state"):
            x = r.get(which)
            if not x:
                continue
            q = x["requests"]
            lines.append("| {} | {} | {} | {} | {} | {:,} | {:,} | {:,} | {:,} | {:,} | {:,} | {:,} | {:,} | {} |".format(
                r["backend"], r["tool"], which, x["wall_s"], x["peak_rss_mb"], q["list"], q["get"],
                q["get_range"], q["head"], q["put"] + q["multipart_part"], q["copy"], q["delete"],
                x["total"], f"{x['cost_per_day_usd']:,.2f}" if which != "first" else "-"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dbs", type=int, default=10_000)
    ap.add_argument("--backends", default="file,s3")
    ap.add_argument("--baseline")
    ap.add_argument("--work", default=os.path.join(ROOT, "target/bench/fleet"))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--moto-log", default=os.path.join(ROOT, "target/moto.log"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/ltx-compactor"))
    ap.add_argument("--json")
    ap.add_argument("--once-state", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if not os.environ.get("SKIP_BUILD"):
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "ltx-compactor",
                               "--bin", "ltx-compactor", "--example", "fleet"], cwd=ROOT)
    tools = [("this", args.binary)]
    if args.baseline:
        tools.append(("baseline", args.baseline))
    results = []
    for backend in args.backends.split(","):
        if backend == "s3" and not os.environ.get("AWS_ENDPOINT"):
            print("AWS_ENDPOINT not set: S3 skipped", file=sys.stderr)
            continue
        for tool, binary in tools:
            if args.once_state:
                if tool != "this":
                    continue
                results.append(run_once_state(args, backend, binary))
            else:
                results.append(run_one(args, backend, tool, binary))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
