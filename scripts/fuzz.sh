#!/usr/bin/env bash
# Fuzzes the gateway's parsers with cargo-fuzz (libFuzzer, nightly Rust): builds every
# target in fuzz/ once, then runs each for SECONDS (default 60), one after another, and
# prints each target's executions. Exits non-zero if any target crashed; the crashing
# input is left in fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs the fuzzer finds go to a temporary folder, so fuzz/corpus (the tracked seeds)
# is only read. Environment: FUZZ_SANITIZER (default `address`; `none` builds faster and
# runs ~2-3x more executions), FUZZ_JOBS (cargo build jobs, default 1), FUZZ_KEEP_CORPUS=DIR
# (keep the grown corpus there instead of deleting it).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
export CARGO_BUILD_JOBS=${FUZZ_JOBS:-1}

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
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    log="$work/$t.log"
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
        failed+=("$t")
        summary+=("$(printf '%-18s CRASH (exit %s) after %s runs' "$t" "$rc" "${runs:-?}")")
        echo "---- $t failed; the end of its log:" >&2
        grep -v '^#[0-9]' "$log" | tail -40 >&2
    else
        summary+=("$(printf '%-18s %12s runs  cov %-6s new inputs %s' "$t" "${runs:-?}" "${cov:-?}" "$corpus")")
    fi
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$t"
        cp -r "$work/$t/." "$FUZZ_KEEP_CORPUS/$t/"
    fi
done

echo
echo "fuzz.sh: ${seconds} s per target, sanitizer ${sanitizer}, $(( $(date +%s) - start )) s in all"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
