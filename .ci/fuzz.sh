#!/usr/bin/env bash
# Fuzzes ltx-core and ltx-compactor's pure modules with cargo-fuzz
# (libFuzzer + AddressSanitizer) on the stable toolchain, and replays every
# committed input. See fuzz/README.md.
#
#   FUZZ_SECONDS    seconds of fuzzing per target (default 30). 0 = no libFuzzer
#                   at all: only replay corpus/, seeds/ and regressions/ with a
#                   plain `cargo test` (no cargo-fuzz install needed).
#   FUZZ_TARGETS    space-separated subset (default: all nine targets).
#   FUZZ_SANITIZER  address (default) or none.
#
# Exits non-zero if any target crashes (panic, failed assertion, ASan report,
# timeout, out-of-memory) on a committed input or on a new one. New crashing
# inputs are left in fuzz/artifacts/<target>/ and printed in hex.
# Run from anywhere; needs network access to crates.io the first time.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

secs="${FUZZ_SECONDS:-30}"
targets="${FUZZ_TARGETS:-decoder random_access page_index merge header old_formats restore_plan listing wal}"
sanitizer="${FUZZ_SANITIZER:-address}"
t0=$SECONDS
stamp() { echo "[fuzz $((SECONDS - t0))s] $*"; }

if [ "$secs" = 0 ]; then
    stamp "FUZZ_SECONDS=0: replaying committed inputs with cargo test (no libFuzzer)"
    cargo test --test replay
    exit 0
fi

# cargo-fuzz, pinned. It passes -Zsanitizer / -Cllvm-args flags to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. The ASan runtime
# ships in the stable sysroot (librustc-stable_rt.asan.a).
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    stamp "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
# Default cargo-fuzz build: optimised, with debug assertions and overflow checks.
fuzz_opts=(--sanitizer "$sanitizer")

stamp "building all targets (sanitizer: $sanitizer)"
cargo fuzz build "${fuzz_opts[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    mkdir -p "$scratch/$t" "corpus/$t" "regressions/$t"
    # libFuzzer writes new inputs into the first directory only (a scratch
    # one, so the committed corpus is not touched); the others are read-only
    # seeds. Every input in them is run first, regressions included: one that
    # crashes fails the run before any fuzzing.
    dirs=("$scratch/$t" "corpus/$t" "regressions/$t")
    case "$t" in decoder | random_access) dirs+=(seeds/ltx) ;; esac
    stamp "running $t for ${secs}s over ${dirs[*]:1}"
    touch "$scratch/$t.start"
    if cargo fuzz run "${fuzz_opts[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)|INITED|^Done' "$scratch/$t.log" || true
    else
        failed+=("$t")
        mkdir -p artifacts/logs
        cp "$scratch/$t.log" "artifacts/logs/$t.log"
        echo "!!! $t FAILED (full log: fuzz/artifacts/logs/$t.log); what went wrong:"
        grep -E -A4 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^SUMMARY:' "$scratch/$t.log" |
            grep -vE '^\s+(at |[0-9]+: )' | head -n 40 || true
        echo "--- last 20 lines:"
        tail -n 20 "$scratch/$t.log"
        for a in $(find "artifacts/$t" -type f -newer "$scratch/$t.start" 2>/dev/null); do
            echo "--- crashing input $a ($(wc -c <"$a") bytes), hex:"
            od -An -tx1 -v "$a" | head -n 64
        done
    fi
done

stamp "done"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED targets: ${failed[*]} (inputs in fuzz/artifacts/; see fuzz/README.md)"
    exit 1
fi
echo "fuzz: all targets passed (${secs}s each)"
