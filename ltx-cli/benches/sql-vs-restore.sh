#!/usr/bin/env bash
# Point-in-time query speed: `ltx sql` of one row by primary key against a
# replica of the 256 MiB benchmark database, versus a full `ltx restore`
# plus the same query with sqlite3, on a `file` replica and an S3 replica
# (moto, or any server of AWS_ENDPOINT).
#
# usage: bash ltx-cli/benches/sql-vs-restore.sh [WORK_DIR]   (from anywhere)
#   WORK_DIR  scratch directory (default target/bench/sql); the replicas are
#             those of restore-vs-litestream.sh (the 256 MiB database of
#             ../shared/bench/make-db.py in WAL mode, shipped by Litestream
#             0.5.17 as its snapshot plus one L0 file per transaction while
#             TXNS transactions run), set up by running that script with
#             RUNS=0 on WORK_DIR when they are missing (SETUP=1 rebuilds).
#   LTX_LITESTREAM  the Litestream 0.5.17 binary (setup only)
#   RUNS=N          runs per tool and replica, alternating (default 5); medians.
#   LTX             the ltx binary (default: cargo build --release, target/release/ltx)
#   LTX_COMPACTOR   the ltx-compactor binary (default: beside LTX; built by
#                   the default cargo build)
#
# Each run starts a new process (nothing cached but the OS page cache of a
# file replica). Reported: wall time; for `ltx sql`, pages fetched, bytes
# read and requests from `--stats --json`; for the restore, bytes read and
# requests from `ltx restore --json`, plus the query's time. The row printed
# by both must be identical.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
W="${1:-target/bench/sql}"
mkdir -p "$W"
W="$(cd "$W" && pwd)"
RUNS="${RUNS:-5}"
command -v sqlite3 > /dev/null || { echo "the sqlite3 shell is needed (apt-get install sqlite3)" >&2; exit 2; }
if [ -z "${LTX:-}" ]; then
  echo "== cargo build --release -p ltx-cli" >&2
  cargo build --release -q -p ltx-cli -p ltx-compactor
  LTX="$ROOT/target/release/ltx"
fi
export LTX
S3=0
if [ -n "${AWS_ENDPOINT:-}" ]; then S3=1; else echo "AWS_ENDPOINT not set: the S3 replica is skipped" >&2; fi
BUCKET="${LTX_TEST_S3_BUCKET:-ltx-test}"

if [ "${SETUP:-0}" = 1 ] || [ ! -f "$W/file/expected.db" ] || { [ "$S3" = 1 ] && { [ ! -f "$W/s3/expected.db" ] || [ -f "$W/s3/compacted.marker" ]; }; }; then
  SETUP=1 RUNS=0 bash "$ROOT/ltx-cli/benches/restore-vs-litestream.sh" "$W"
  rm -f "$W/s3/compacted.marker"
fi
PREFIX="$(cat "$W/prefix")"

url_of() { if [ "$1" = file ]; then echo "$W/file/replica"; else echo "s3://$BUCKET/$PREFIX"; fi; }
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# The row: the middle of the orders table.
MAXID=$(sqlite3 "$W/file/expected.db" "SELECT max(id) FROM orders")
ID=$((MAXID / 2))
Q="SELECT * FROM orders WHERE id = $ID"
echo "query: $Q" >&2

# RUNS alternating runs of `ltx sql` and `ltx restore` + sqlite3 on URL;
# results in $W/$kind/sql-results-$label.txt.
measure() { # kind label url
  local kind=$1 label=$2 url=$3 f="$W/$1/sql-results-$2.txt" i t0 t1 t2 got out
  local want
  want=$(sqlite3 "$W/$kind/expected.db" "$Q")
  : > "$f"
  for i in $(seq "$RUNS"); do
    t0=$(now)
    got=$("$LTX" sql "$url" "$Q" --stats --json 2> "$W/$kind/sql-stats.json")
    t1=$(now)
    got=$("$LTX" sql "$url" "$Q")
    [ "$got" = "$want" ] || { echo "ERROR: $kind $label: ltx sql printed [$got], sqlite3 on the database [$want]" >&2; exit 1; }
    python3 - "$W/$kind/sql-stats.json" "$(awk "BEGIN { print $t1 - $t0 }")" >> "$f" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
r = s["requests"]
print("sql", sys.argv[2], s["pages_fetched"], s["bytes_read"], sum(r.values()),
      "/".join("%s=%d" % kv for kv in r.items() if kv[1]), s["database_bytes"], s["files_planned"], s["files_touched"])
PY
    out="$W/$kind/out-sql.db"
    rm -f "$out"
    t0=$(now)
    "$LTX" restore "$url" -o "$out" --json > "$W/$kind/restore.json"
    t1=$(now)
    got=$(sqlite3 "$out" "$Q")
    t2=$(now)
    [ "$got" = "$want" ] || { echo "ERROR: $kind $label: the restored database answered [$got]" >&2; exit 1; }
    python3 - "$W/$kind/restore.json" "$(awk "BEGIN { print $t2 - $t0 }")" "$(awk "BEGIN { print $t2 - $t1 }")" >> "$f" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
r = s["requests"]
print("restore", sys.argv[2], s["commit"], s["bytes_read"], sum(r.values()),
      "/".join("%s=%d" % kv for kv in r.items() if kv[1]), sys.argv[3], len(s["files"]))
PY
    rm -f "$out"
    echo "$kind $label run $i: $(tail -2 "$f" | tr '\n' ' ')" >&2
  done
}

kinds=(file)
[ "$S3" = 1 ] && kinds+=(s3)
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); ltx: $LTX" >&2
for kind in "${kinds[@]}"; do
  measure "$kind" shipped "$(url_of "$kind")"
done
# The same replicas after one pass of ltx-compactor (default policy, its
# clock an hour ahead so every window is complete): the snapshot and one
# compacted file. The file replica is compacted as a copy; the S3 replica in
# place (the next run sets it up again).
CT="${LTX_COMPACTOR:-$(dirname "$LTX")/ltx-compactor}"
if [ -x "$CT" ]; then
  for kind in "${kinds[@]}"; do
    if [ "$kind" = file ]; then
      rm -rf "$W/file/compacted"
      cp -r "$W/file/replica" "$W/file/compacted"
      curl="$W/file/compacted"
    else
      curl=$(url_of s3)
      touch "$W/s3/compacted.marker"
    fi
    "$CT" run "$curl" --once --adopt --now-ms $(( $(date +%s%3N) + 3600000 )) > "$W/$kind/compact.log" 2>&1
    measure "$kind" compacted "$curl"
  done
else
  echo "no ltx-compactor binary at $CT (cargo build --release -p ltx-compactor): the compacted runs are skipped" >&2
fi

echo
echo "| replica | plan | how | wall (median of $RUNS) | pages fetched | bytes read | requests |"
echo "|---|---|---|---|---|---|---|"
for kind in "${kinds[@]}"; do
  for label in shipped compacted; do
    f="$W/$kind/sql-results-$label.txt"
    [ -f "$f" ] || continue
    wall=$(awk '$1 == "sql" { print $2 }' "$f" | median)
    read -r _ _ pages bytes req kinds_ dbb planned touched < <(awk '$1 == "sql"' "$f" | tail -1)
    printf '| %s | %s: %s files | `ltx sql` | %.3f s | %s | %s (%.2f%% of %s) | %s (%s); %s of %s planned files touched |\n' \
      "$kind" "$label" "$planned" "$wall" "$pages" "$bytes" "$(awk "BEGIN { print $bytes * 100 / $dbb }")" "$dbb" "$req" "$kinds_" "$touched" "$planned"
    wall=$(awk '$1 == "restore" { print $2 }' "$f" | median)
    qt=$(awk '$1 == "restore" { print $7 }' "$f" | median)
    read -r _ _ commit bytes req kinds_ _ files < <(awk '$1 == "restore"' "$f" | tail -1)
    printf '| %s | %s: %s files | `ltx restore` + `sqlite3` | %.3f s (query %.3f s) | %s (all) | %s | %s (%s) |\n' \
      "$kind" "$label" "$files" "$wall" "$qt" "$commit" "$bytes" "$req" "$kinds_"
  done
done
