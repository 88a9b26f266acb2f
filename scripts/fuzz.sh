#!/usr/bin/env bash
# Fuzzes the gateway's parsers with cargo-fuzz (libFuzzer, nightly Rust): builds every
# target in fuzz/ once, then runs each for SECONDS (default 60), one per CPU at a time, and
# prints each target's executions. Exits non-zero if any target crashed; the crashing
# input is left in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs the fuzzer finds go to a temporary folder, so fuzz/corpus (the tracked seeds)
# is only read. Environment: FUZZ_SANITIZER (default `address`; `none` builds faster and
# runs ~2-3x more executions), FUZZ_JOBS (cargo build jobs, default: the CPUs),
# FUZZ_PARALLEL (fuzzers at once, default: the CPUs), FUZZ_KEEP_CORPUS=DIR (keep the grown
# corpus there instead of deleting it).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
export CARGO_BUILD_JOBS=${FUZZ_JOBS:-$(nproc)}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

# cargo-fuzz's default build: optimized, with debug assertions and overflow checks on.
build_flags=(--sanitizer "$sanitizer")
start=$(date +%s)
nice -n 10 cargo +nightly fuzz build "${build_flags[@]}" --fuzz-dir fuzz
echo "fuzz.sh: built ${#targets[@]} targets in $(( $(date +%s) - start )) s"
bin_dir="fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-gateway-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
# One target: its run, then its summary line in $work/$t.result and its exit status in
# $work/$t.rc.
fuzz_one() {
    local t=$1 log="$work/$1.log" rc runs cov corpus
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    echo "fuzz.sh: $t for ${seconds} s"
    set +e
    # The binary built above, not `cargo fuzz run`: that would rebuild whenever the sources
    # change under a long run. The first folder is the writable one.
    nice -n 10 "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=30 \
        -print_final_stats=1 "$work/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | awk '{print $2}' || true)
    if [ -z "$runs" ]; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
    fi
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    corpus=$(find "$work/$t" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        printf '%-18s CRASH (exit %s) after %s runs\n' "$t" "$rc" "${runs:-?}" >"$work/$t.result"
        {
            echo "---- $t failed; the end of its log:"
            grep -v '^#[0-9]' "$log" | tail -40
        } >&2
    else
        printf '%-18s %12s runs  cov %-6s new inputs %s\n' "$t" "${runs:-?}" "${cov:-?}" "$corpus" >"$work/$t.result"
    fi
    echo "$rc" >"$work/$t.rc"
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$t"
        cp -r "$work/$t/." "$FUZZ_KEEP_CORPUS/$t/"
    fi
}

# Each fuzzer is one process on one core: run as many at once as there are CPUs
# (FUZZ_PARALLEL overrides), so CI spends SECONDS x targets / CPUs.
parallel=${FUZZ_PARALLEL:-$(nproc)}
running=0
for t in "${targets[@]}"; do
    fuzz_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
failed=()
summary=()
for t in "${targets[@]}"; do
    summary+=("$(cat "$work/$t.result" 2>/dev/null || echo "$t: no result")")
    if [ "$(cat "$work/$t.rc" 2>/dev/null || echo 1)" != 0 ]; then
        failed+=("$t")
    fi
done

echo
echo "fuzz.sh: ${seconds} s per target, sanitizer ${sanitizer}, $(( $(date +%s) - start )) s in all"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
