#!/usr/bin/env bash
# Benchmarks the ltx binary on a 256 MiB SQLite database against the
# reference Go implementation's timings on the same machine.
#
# usage: bash ltx-cli/benches/cli.sh [DB_PATH]      (from anywhere)
#   DB_PATH  the benchmark database (relative paths: from the repo root); built with ../shared/bench/make-db.py
#            (--mb 256) when missing. Default: target/bench/bench-256.db
#   RUNS=N   runs per command (default 5); the best is reported.
#
# For each command: best wall time, the CPU time of that run, MB/s of page
# data, peak RSS as /usr/bin/time reports it (which counts the pages of
# memory-mapped inputs that were touched), and the peak anonymous RSS
# (heap, stacks: everything except mapped files), sampled from
# /proc/PID/status in a separate run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DB="${1:-target/bench/bench-256.db}"
RUNS="${RUNS:-5}"
WORK="$(dirname "$DB")/ltx-bench-work"
mkdir -p "$(dirname "$DB")" "$WORK"

# Reference Go numbers on this machine (seconds) and the speed-up targets.
declare -A REF=([encode-db]=2.31 [verify]=1.02 [apply]=2.14 [checksum]=0.27)
declare -A TARGET=([encode-db]=5 [verify]=8 [apply]=4 [checksum]=3)

calc() { awk "BEGIN { print $* }"; }
lt() { awk "BEGIN { exit !($1 < $2) }"; }

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time" >&2
  (apt-get update -qq && apt-get install -y -qq time) >/dev/null
fi

echo "== building release binary"
cargo build --release -q -p ltx-cli
LTX="$ROOT/target/release/ltx"

if [ -f "$DB" ]; then
  echo "== using existing $DB"
else
  echo "== building $DB (256 MiB; takes a few minutes)"
  python3 ../shared/bench/make-db.py "$DB" --mb 256
fi
DB_BYTES=$(stat -c %s "$DB")
SNAP="$WORK/snapshot.ltx"
RESTORED="$WORK/restored.db"
echo "database: $DB_BYTES bytes; $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# The disk's floor: writing and fsyncing as many bytes as apply does.
sync
t0=$(date +%s.%N)
dd if="$DB" of="$WORK/dd.tmp" bs=1M conv=fsync status=none
t1=$(date +%s.%N)
rm -f "$WORK/dd.tmp"
echo "disk floor: copy + fsync of the database takes $(calc "$t1 - $t0" | xargs printf '%.2f') s"

prepare() { # per-run setup outside the timing
  case "$1" in
    apply) rm -f "$RESTORED" ;;
  esac
  sync
}

cmdline() {
  case "$1" in
    encode-db) echo "$LTX encode-db $DB -o $SNAP --timestamp 0" ;;
    verify) echo "$LTX verify $SNAP" ;;
    apply) echo "$LTX apply --db $RESTORED $SNAP" ;;
    checksum) echo "$LTX checksum $DB" ;;
  esac
}

# Peak RssAnon of one run, sampled every few milliseconds (kB).
peak_anon() {
  local name=$1 peak=0 v
  prepare "$name"
  # shellcheck disable=SC2046
  $(cmdline "$name") >/dev/null &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$v" ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
    sleep 0.002
  done
  wait "$pid"
  echo "$peak"
}

printf '\n%-10s %8s %8s %9s %9s %10s %10s %9s %8s %s\n' command best_s cpu_s MB/s ref_s speedup target rss_MB anon_MB verdict
for name in encode-db verify apply checksum; do
  best=""; best_cpu=""; best_rss=""
  for _ in $(seq "$RUNS"); do
    prepare "$name"
    # shellcheck disable=SC2046
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" $(cmdline "$name") >/dev/null
    read -r e u s m < "$WORK/time.txt"
    if [ -z "$best" ] || lt "$e" "$best"; then
      best=$e; best_cpu=$(calc "$u + $s"); best_rss=$m
    fi
  done
  anon=$(peak_anon "$name")
  speed=$(calc "${REF[$name]} / $best")
  verdict=$(lt "$speed" "${TARGET[$name]}" && echo MISS || echo ok)
  printf '%-10s %8.2f %8.2f %9.0f %9.2f %9.1fx %9sx %9.1f %8.1f %s\n' "$name" "$best" "$best_cpu" \
    "$(calc "$DB_BYTES / 1000000 / $best")" "${REF[$name]}" "$speed" "${TARGET[$name]}" \
    "$(calc "$best_rss / 1024")" "$(calc "$anon / 1024")" "$verdict"
done

if cmp -s "$RESTORED" "$DB"; then
  echo "apply reproduced the database byte for byte"
else
  echo "ERROR: the restored database differs from $DB" >&2
  exit 1
fi
echo "(timings are wall-clock, best of $RUNS, warm page cache, dirty pages synced before each run;"
echo " writes are fsynced, so encode-db and apply include the disk; on a loaded machine cpu_s is the steadier figure)"
