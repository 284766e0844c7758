#!/usr/bin/env bash
# Restore speed: `ltx restore` against `litestream restore` (0.5.17) on the
# same replicas, a `file` replica and an S3 replica (moto, or any server of
# AWS_ENDPOINT), both written by Litestream itself.
#
# usage: bash ltx-cli/benches/restore-vs-litestream.sh [WORK_DIR]   (from anywhere)
#   WORK_DIR  scratch directory (default target/bench/restore-vs-litestream);
#             its replicas are reused when present (SETUP=1 rebuilds them).
#   LTX_LITESTREAM  the Litestream 0.5.17 binary (default: litestream on PATH)
#   MOTO_LOG        the S3 server's access log, one line per request (default
#                   target/moto.log, where .ci/s3.sh writes it); used to count
#                   Litestream's requests. Without AWS_ENDPOINT the S3 replica
#                   is skipped (source the exports of `.ci/s3.sh start`).
#   RUNS=N          runs per tool and replica, alternating (default 3); medians
#                   (RUNS=0: set up the replicas only).
#   TXNS=N          transactions replicated after the snapshot (default 500).
#   LTX             the ltx binary (default: cargo build --release, target/release/ltx)
#
# Setup: the 256 MiB database of ../shared/bench/make-db.py, in WAL mode, is
# replicated by `litestream replicate` (ship-only: it uploads its snapshot and
# one L0 file per transaction, compacts nothing) to both replicas while TXNS
# small SQLite transactions run, one every 150 ms; when both replicas hold
# the newest TXID, Litestream is stopped and the database checkpointed: its
# file is the expected result.
#
# Runs: for each replica, `litestream restore -config CFG -o OUT DB` and
# `ltx restore URL -o OUT --json` alternate RUNS times. Reported: the median
# wall time, the median peak RSS (/usr/bin/time -v), and the requests: ours
# from the `requests` object of `ltx restore --json`; Litestream's from the
# lines the S3 server logged with the replica's prefix during its runs. For
# the file replica both tools' files opened under the replica are counted
# with strace (one extra, untimed run each). Every output must be
# byte-identical to the other tool's and to the expected database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
W="${1:-target/bench/restore-vs-litestream}"
mkdir -p "$W"
W="$(cd "$W" && pwd)"
RUNS="${RUNS:-3}"
TXNS="${TXNS:-500}"
LS="${LTX_LITESTREAM:-$(command -v litestream || true)}"
MOTO_LOG="${MOTO_LOG:-$ROOT/target/moto.log}"
[ -x "$LS" ] || { echo "no litestream binary (set LTX_LITESTREAM)" >&2; exit 2; }
[ "$("$LS" version)" = "0.5.17" ] || echo "warning: litestream $("$LS" version), this compares with 0.5.17" >&2
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is needed" >&2; exit 2; }
if [ -z "${LTX:-}" ]; then
  echo "== cargo build --release -p ltx-cli" >&2
  cargo build --release -q -p ltx-cli
  LTX="$ROOT/target/release/ltx"
fi

S3=0
if [ -n "${AWS_ENDPOINT:-}" ]; then S3=1; else echo "AWS_ENDPOINT not set: the S3 replica is skipped" >&2; fi
BUCKET="${LTX_TEST_S3_BUCKET:-ltx-test}"

# (Litestream 0.5.17's S3 client fails at start when AWS_CA_BUNDLE is set:
# it runs with it removed from its environment.)

setup() {
  rm -rf "$W/file" "$W/s3" "$W/litestream.yml" "$W/prefix"
  mkdir -p "$W/file/replica" "$W/s3"
  if [ ! -f "$W/base.db" ]; then
    echo "== building the 256 MiB database (make-db.py; a few minutes)" >&2
    python3 "$ROOT/../shared/bench/make-db.py" "$W/base.db.tmp" --mb 256
    sqlite3 "$W/base.db.tmp" "PRAGMA journal_mode=WAL;" > /dev/null
    mv "$W/base.db.tmp" "$W/base.db"
  fi
  cp "$W/base.db" "$W/file/app.db"
  local prefix="ltxbench$(date +%s)"
  echo "$prefix" > "$W/prefix"
  {
    cat <<YML
snapshot:
  interval: 1000h
  retention: 1000h
levels:
  - interval: 1000h
l0-retention: 1000h
retention:
  enabled: false
dbs:
  - path: $W/file/app.db
    monitor-interval: 50ms
    replica:
      type: file
      path: $W/file/replica
      sync-interval: 50ms
YML
    if [ "$S3" = 1 ]; then
      cp "$W/base.db" "$W/s3/app.db"
      cat <<YML
  - path: $W/s3/app.db
    monitor-interval: 50ms
    replica:
      type: s3
      bucket: $BUCKET
      path: $prefix
      endpoint: $AWS_ENDPOINT
      region: ${AWS_REGION:-us-east-1}
      force-path-style: true
      access-key-id: ${AWS_ACCESS_KEY_ID:-test}
      secret-access-key: ${AWS_SECRET_ACCESS_KEY:-test}
      sync-interval: 50ms
YML
    fi
  } > "$W/litestream.yml"
  echo "== litestream replicate ($TXNS transactions)" >&2
  env -u AWS_CA_BUNDLE "$LS" replicate -config "$W/litestream.yml" > "$W/replicate.log" 2>&1 &
  local pid=$! # env execs litestream: this is its PID
  local dbs=("$W/file/app.db")
  [ "$S3" = 1 ] && dbs+=("$W/s3/app.db")
  # The snapshot first, then one small transaction every 150 ms on each database.
  python3 - "$TXNS" "${dbs[@]}" <<'PY'
import random, sqlite3, sys, time
n = int(sys.argv[1]); paths = sys.argv[2:]
conns = [sqlite3.connect(p, isolation_level=None) for p in paths]
time.sleep(8)  # Litestream's first sync: the snapshot of the whole database
rnd = random.Random(11)
maxid = conns[0].execute("SELECT max(id) FROM orders").fetchone()[0]
for i in range(n):
    k = rnd.randint(1, 8)
    kind = rnd.random()
    if kind < 0.6:
        rows = [(rnd.randint(1, 1000), round(rnd.random() * 500, 2), "new", "order %d/%d" % (i, j), 1800000000 + i) for j in range(k)]
        sql = [("INSERT INTO orders(customer_id,total,status,note,created) VALUES(?,?,?,?,?)", r) for r in rows]
    elif kind < 0.9:
        sql = [("UPDATE orders SET status='paid', total=total+1 WHERE id=?", (rnd.randint(1, maxid),)) for _ in range(k)]
    else:
        sql = [("DELETE FROM orders WHERE id=?", (rnd.randint(1, maxid),)) for _ in range(k)]
    for c in conns:
        c.execute("BEGIN")
        for s, a in sql:
            c.execute(s, a)
        c.execute("COMMIT")
    time.sleep(0.15)
PY
  # Wait until each replica holds the newest TXID Litestream wrote locally.
  local t0=$SECONDS
  while :; do
    local ok=1
    for db in "${dbs[@]}"; do
      local want got url
      want=$(ls "$(dirname "$db")/.app.db-litestream/ltx/0/" | sort | tail -1 | cut -d- -f2 | cut -d. -f1)
      if [ "$db" = "$W/file/app.db" ]; then url="$W/file/replica"; else url="s3://$BUCKET/$(cat "$W/prefix")"; fi
      got=$("$LTX" restore "$url" --dry-run --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["txid"])' || true)
      [ "$want" = "$got" ] || ok=0
    done
    [ "$ok" = 1 ] && break
    [ $((SECONDS - t0)) -lt 120 ] || { echo "replicas did not catch up; see $W/replicate.log" >&2; kill "$pid"; exit 1; }
    sleep 1
  done
  kill -TERM "$pid"; wait "$pid" || true
  for db in "${dbs[@]}"; do
    sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE);" > /dev/null
    [ ! -s "$db-wal" ] || { echo "$db: the WAL is not empty after a checkpoint" >&2; exit 1; }
    cp "$db" "$(dirname "$db")/expected.db"
  done
}

if [ "${SETUP:-0}" = 1 ] || [ ! -f "$W/file/expected.db" ] || { [ "$S3" = 1 ] && [ ! -f "$W/s3/expected.db" ]; }; then
  setup
fi
PREFIX="$(cat "$W/prefix")"
[ "$RUNS" -gt 0 ] || exit 0

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
moto_lines() { if [ -f "$MOTO_LOG" ]; then grep -c -- "$PREFIX" "$MOTO_LOG" || true; else echo 0; fi; }

# One timed run: prints "wall_s rss_kb requests".
run_one() { # kind tool
  local kind=$1 tool=$2 out="$W/$1/out-$2.db" url db="$W/$1/app.db"
  if [ "$kind" = file ]; then url="$W/file/replica"; else url="s3://$BUCKET/$PREFIX"; fi
  rm -f "$out"
  sync
  local before after t0 t1 req
  before=$(moto_lines)
  t0=$(now)
  if [ "$tool" = litestream ]; then
    /usr/bin/time -v -o "$W/time.txt" env -u AWS_CA_BUNDLE "$LS" restore -config "$W/litestream.yml" -o "$out" "$db" > "$W/run.log" 2>&1
  else
    /usr/bin/time -v -o "$W/time.txt" "$LTX" restore "$url" -o "$out" --json > "$W/run.json" 2> "$W/run.log"
  fi
  t1=$(now)
  sleep 0.3
  after=$(moto_lines)
  if [ "$tool" = ltx ]; then
    req=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["requests"]; print(sum(r.values()))' "$W/run.json")
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["requests"]; print(" ".join("%s=%d" % kv for kv in r.items() if kv[1]))' "$W/run.json" > "$W/$kind/requests-ltx.txt"
  elif [ "$kind" = s3 ] && [ -f "$MOTO_LOG" ]; then
    req=$((after - before))
  else
    req=NA
  fi
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/time.txt")
  echo "$(awk "BEGIN { print $t1 - $t0 }") $rss $req"
}

# Files opened under the replica by one run under strace (file replica).
opened() { # tool
  local out="$W/file/out-strace.db"
  rm -f "$out"
  if [ "$1" = litestream ]; then
    strace -f -qq -e trace=openat -o "$W/strace.txt" env -u AWS_CA_BUNDLE "$LS" restore -config "$W/litestream.yml" -o "$out" "$W/file/app.db" > /dev/null 2>&1
  else
    strace -f -qq -e trace=openat -o "$W/strace.txt" "$LTX" restore "$W/file/replica" -o "$out" > /dev/null 2>&1
  fi
  rm -f "$out"
  grep -F "$W/file/replica/" "$W/strace.txt" | grep -v -- '= -1' | grep -c '\.ltx"' || true
}

kinds=(file)
[ "$S3" = 1 ] && kinds+=(s3)
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); ltx: $LTX; litestream: $LS" >&2
for kind in "${kinds[@]}"; do
  : > "$W/$kind/results.txt"
  for i in $(seq "$RUNS"); do
    for tool in litestream ltx; do
      r=$(run_one "$kind" "$tool")
      echo "$kind $tool run $i: $r" >&2
      echo "$tool $r" >> "$W/$kind/results.txt"
    done
  done
  exp="$W/$kind/expected.db"
  cmp "$W/$kind/out-litestream.db" "$W/$kind/out-ltx.db" || { echo "ERROR: $kind: the two restores differ" >&2; exit 1; }
  cmp "$W/$kind/out-ltx.db" "$exp" || { echo "ERROR: $kind: the restores differ from the source database" >&2; exit 1; }
  echo "$kind: both outputs byte-identical to each other and to the source database ($(stat -c %s "$exp") bytes)" >&2
  "$LTX" restore "$( [ "$kind" = file ] && echo "$W/file/replica" || echo "s3://$BUCKET/$PREFIX")" --dry-run --json \
    | python3 -c 'import json,sys; p=json.load(sys.stdin); print("%d files, %.1f MiB" % (len(p["files"]), p["files_bytes"] / 2**20))' > "$W/$kind/plan.txt"
done
if [ -f "$W/file/results.txt" ] && command -v strace > /dev/null; then
  echo "litestream $(opened litestream)" > "$W/file/opened.txt"
  echo "ltx $(opened ltx)" >> "$W/file/opened.txt"
fi

echo
echo "| replica | plan | tool | wall (median of $RUNS) | peak RSS | requests |"
echo "|---|---|---|---|---|---|"
for kind in "${kinds[@]}"; do
  for tool in litestream ltx; do
    wall=$(awk -v t="$tool" '$1 == t { print $2 }' "$W/$kind/results.txt" | median)
    rss=$(awk -v t="$tool" '$1 == t { print $3 }' "$W/$kind/results.txt" | median)
    req=$(awk -v t="$tool" '$1 == t { print $4 }' "$W/$kind/results.txt" | sort | uniq | paste -sd/)
    if [ "$kind" = file ] && [ -f "$W/file/opened.txt" ]; then
      req="$(awk -v t="$tool" '$1 == t { print $2 }' "$W/file/opened.txt") files opened"
      [ "$tool" = ltx ] && req="$req; $(cat "$W/file/requests-ltx.txt")"
    elif [ "$tool" = ltx ]; then
      req="$req ($(cat "$W/$kind/requests-ltx.txt"))"
    fi
    printf '| %s | %s | `%s restore` | %.2f s | %.0f MiB | %s |\n' "$kind" "$(cat "$W/$kind/plan.txt")" "$tool" "$wall" "$(awk "BEGIN { print $rss / 1024 }")" "$req"
  done
done
