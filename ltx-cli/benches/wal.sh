#!/usr/bin/env bash
# Times `ltx wal encode` (SQLite WAL -> LTX files) as a whole process on a
# WAL of about 270 MiB written by real SQLite (about 2,000 transactions of 1
# to 40 statements on a 20 MiB database, 4 KiB pages), next to `ltx verify`
# of what it wrote (the LTX decode path) and `ltx wal dump --summary` (the
# WAL read alone). MB/s are of WAL bytes (of LTX bytes for verify).
#
# usage: bash ltx-cli/benches/wal.sh            (from anywhere)
#   RUNS=N   runs per command (default 5; medians reported by farm-bench
#            when it is installed, else the best of N).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RUNS="${RUNS:-5}"
WORK="target/bench/wal"
mkdir -p "$WORK"

echo "== building release binary"
cargo build --release -q -p ltx-cli
LTX="$ROOT/target/release/ltx"

if [ ! -f "$WORK/copy.db-wal" ]; then
  echo "== writing the WAL with SQLite (python3 sqlite3)"
  (cd "$WORK" && rm -f big.db* copy.db* && python3 - <<'EOF'
import os, random, shutil, sqlite3
random.seed(1)
c = sqlite3.connect("big.db", isolation_level=None)
c.execute("PRAGMA page_size=4096"); c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0"); c.execute("PRAGMA synchronous=OFF")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
c.execute("CREATE INDEX t_k ON t(k)")
c.execute("BEGIN")
for i in range(20000):
    c.execute("INSERT INTO t(k, v) VALUES (?, randomblob(1000))", (random.randrange(10**9),))
c.execute("COMMIT")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
n = 0
while os.path.getsize("big.db-wal") < 270 * 2**20:
    c.execute("BEGIN")
    for j in range(random.randrange(1, 40)):
        r = random.random()
        if r < 0.6:
            c.execute("INSERT INTO t(k, v) VALUES (?, randomblob(?))", (random.randrange(10**9), random.randrange(50, 3000)))
        elif r < 0.9:
            c.execute("UPDATE t SET v = randomblob(?) WHERE id = ?", (random.randrange(50, 2000), random.randrange(1, 20000)))
        else:
            c.execute("DELETE FROM t WHERE id = ?", (random.randrange(1, 20000),))
    c.execute("COMMIT")
    n += 1
# The main file as it was before the WAL, and the WAL: copied while the
# connection is open (closing it would checkpoint).
shutil.copy("big.db", "copy.db"); shutil.copy("big.db-wal", "copy.db-wal")
print(f"{n} transactions")
EOF
  )
fi
WAL_BYTES=$(stat -c %s "$WORK/copy.db-wal")
echo "WAL: $WAL_BYTES bytes; $("$LTX" wal dump --summary "$WORK/copy.db-wal" | tail -1)"

bench() { # name, bytes, command...
  local name="$1" bytes="$2"; shift 2
  if command -v farm-bench >/dev/null; then
    echo "== $name"
    farm-bench -n "$RUNS" --timeout 600 -- "$@" | grep -E "wall|cpu|peak"
  else
    local best=""
    for _ in $(seq "$RUNS"); do
      local t0 t1
      t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
      local t; t=$(awk "BEGIN { print $t1 - $t0 }")
      if [ -z "$best" ] || awk "BEGIN { exit !($t < $best) }"; then best=$t; fi
    done
    echo "== $name: best ${best}s, $(awk "BEGIN { printf \"%.0f\", $bytes / 1048576 / $best }") MiB/s"
  fi
}

bench "ltx wal encode (tracking checksums)" "$WAL_BYTES" \
  sh -c "rm -rf '$WORK/out' && exec '$LTX' wal encode '$WORK/copy.db' -o '$WORK/out'"
bench "ltx wal encode --no-checksum (as Litestream)" "$WAL_BYTES" \
  sh -c "rm -rf '$WORK/out2' && exec '$LTX' wal encode '$WORK/copy.db' -o '$WORK/out2' --no-checksum"
bench "ltx wal dump --summary (the WAL read alone)" "$WAL_BYTES" \
  "$LTX" wal dump --summary "$WORK/copy.db-wal"
LTX_BYTES=$(du -sb "$WORK/out" | cut -f1)
echo "LTX files: $(ls "$WORK/out" | wc -l), $LTX_BYTES bytes"
bench "ltx verify of the files written (LTX decode, chain checksum replay)" "$LTX_BYTES" \
  "$LTX" verify "$WORK/out"
