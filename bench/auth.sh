#!/usr/bin/env bash
# bench/auth.sh: the cost of authentication per request (issue "authentication and
# authorization": API-key and HS256 JWT requests may cost at most 10% more CPU than the same
# requests without authentication, in the same run).
#
# Starts 4 mock MCP servers (`mcp-gateway fleet`) and, in turn, gateways on one shard in
# front of them that differ only in `security.authentication`, each under the same wrk load
# (POST of an MCP tools/call to `/`, bench/post.lua) alone on PROXY_CPU, ROUNDS times
# interleaved: the plain request with authentication off; the request with an API key
# (X-API-Key) with authentication off and on (one key configured); the request with an
# HS256 bearer token with authentication off and on (jwtSecret; verified once per shard,
# then served from the shard's token cache). "The same requests without authentication" are
# the `off` rows: the ratio column compares each `on` row with its `off` row. CPU per
# request is the gateway's utime+stime from /proc over the run / requests.
#
# With CALLGRIND=1 each variant runs once under valgrind's callgrind instead (the epoll
# driver: io_uring does not run under valgrind; wrk -c4): the table then shows instructions
# per request inside the connection task, which, unlike wall-clock CPU, repeat exactly.
#
# Usage: bench/auth.sh [--no-build]
# Environment: DURATION (10), ROUNDS (3), CONNS (64), PROXY_CPU (0), LOAD_CPU (1),
#   CALLGRIND (unset), KEEP_TMP=1 keeps the configs, logs and callgrind files.

set -euo pipefail
export LC_ALL=C
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/mcp-gateway
WORK=$(mktemp -d /tmp/mcp-auth.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP_TMP:-} ]]; then echo "[bench] kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet --bin mcp-gateway)
fi

BASE=22001
GW=18490
CLK_TCK=$(getconf CLK_TCK)
API_KEY=bench-api-key-0123456789abcdef
SECRET=bench-hmac-secret-0123456789abcdef-0123456789
KEY_HASH="sha256:$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
JWT_HEAD=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
JWT_BODY=$(printf '{"sub":"bench","roles":["reader"],"exp":%d}' $(($(date +%s) + 86400)) | b64url)
JWT_SIG=$(printf %s "$JWT_HEAD.$JWT_BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
JWT="$JWT_HEAD.$JWT_BODY.$JWT_SIG"

taskset -c "$LOAD_CPU" "$BIN" fleet --servers 4 --base-port $BASE >"$WORK/fleet.log" 2>&1 &
PIDS+=($!)

# config VARIANT: the gateway's config for one variant.
config() {
    local auth='"enabled": false'
    case $1 in
        apikey) auth="\"enabled\": true, \"methods\": [\"apikey\"], \"apiKeys\": [{\"name\": \"bench\", \"keyHash\": \"$KEY_HASH\"}]" ;;
        jwt) auth="\"enabled\": true, \"methods\": [\"jwt\"], \"jwtSecret\": \"$SECRET\"" ;;
    esac
    local servers="" i
    for i in 0 1 2 3; do
        servers+="${servers:+,}{\"id\":\"s$i\",\"url\":\"http://127.0.0.1:$((BASE + i))/mcp\"}"
    done
    cat <<JSON
{
  "server": {"host": "127.0.0.1", "port": $GW, "workers": 1},
  "upstream": {"servers": [$servers], "healthCheck": {"enabled": false}},
  "security": {"authentication": {$auth}},
  "monitoring": {"dashboard": {"enabled": false}},
  "logging": {"level": "warn"}
}
JSON
}

header_of() {
    case ${1%-off} in
        apikey) echo "X-API-Key: $API_KEY" ;;
        jwt) echo "Authorization: Bearer $JWT" ;;
        *) echo "" ;;
    esac
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

CALLGRIND=${CALLGRIND:-}
if [[ -n $CALLGRIND ]]; then
    command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
    ROUNDS=1
    CONNS=4
fi

# run VARIANT: prints "requests cpu_us_per_request p99" (instructions per request with
# CALLGRIND).
run() {
    local variant=$1 cfg=$WORK/$1.json
    config "$variant" >"$cfg"
    if [[ -n $CALLGRIND ]]; then
        MONOIO_FORCE_LEGACY_DRIVER=1 taskset -c "$PROXY_CPU" valgrind --tool=callgrind \
            --callgrind-out-file="$WORK/cg-$variant.out" --toggle-collect='*serve_connection*' \
            "$BIN" --config "$cfg" >"$WORK/$variant.out" 2>"$WORK/$variant.log" &
    else
        taskset -c "$PROXY_CPU" "$BIN" --config "$cfg" >"$WORK/$variant.out" 2>"$WORK/$variant.log" &
    fi
    local gw=$!
    PIDS+=($gw)
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$GW/health" && break; sleep 0.1; done
    local auth
    auth=$(header_of "$variant")
    # Warm-up (pools, the token cache), then the measured run.
    AUTH_HEADER=$auth taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s "$ROOT/bench/post.lua" "http://127.0.0.1:$GW/" >"$WORK/warm-$variant.txt" 2>&1
    local t0 t1
    t0=$(cpu_ticks $gw)
    AUTH_HEADER=$auth taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$ROOT/bench/post.lua" "http://127.0.0.1:$GW/" >"$WORK/wrk-$variant.txt" 2>&1
    t1=$(cpu_ticks $gw)
    kill -INT $gw 2>/dev/null || true
    wait $gw 2>/dev/null || true
    local requests non2xx p99
    requests=$(awk '/ requests in / { print $1 }' "$WORK/wrk-$variant.txt")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk-$variant.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk-$variant.txt")
    if [[ -n ${non2xx:-} ]]; then
        echo "[bench] $variant: $non2xx non-2xx answers" >&2
    fi
    if [[ -n $CALLGRIND ]]; then
        # Warm-up included: its requests are counted from the gateway's own total.
        local ir all
        ir=$(awk '/^summary:/ { print $2 }' "$WORK/cg-$variant.out")
        all=$(awk '/^totals:/ { print $2 }' "$WORK/cg-$variant.out")
        ir=${ir:-$all}
        requests=$((requests + $(awk '/ requests in / { print $1 }' "$WORK/warm-$variant.txt")))
        awk -v r="$requests" -v i="$ir" -v p="$p99" 'BEGIN { printf "%d %.0f %s\n", r, i / r, p }'
    else
        awk -v r="$requests" -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v p="$p99" \
            'BEGIN { printf "%d %.2f %s\n", r, d * 1000000 / hz / r, p }'
    fi
}

declare -A SUM CNT REQ P99
for round in $(seq "$ROUNDS"); do
    for variant in none apikey-off apikey jwt-off jwt; do
        read -r requests cpu p99 < <(run "$variant")
        echo "[bench] round $round $variant: $requests requests, $cpu µs/req, p99 $p99" >&2
        SUM[$variant]=$(awk -v a="${SUM[$variant]:-0}" -v b="$cpu" 'BEGIN { print a + b }')
        CNT[$variant]=$((${CNT[$variant]:-0} + 1))
        REQ[$variant]=$((${REQ[$variant]:-0} + requests))
        P99[$variant]="${P99[$variant]:+${P99[$variant]} }$p99"
    done
done

mean() { awk -v s="${SUM[$1]}" -v n="${CNT[$1]}" 'BEGIN { printf "%.2f", s / n }'; }
echo
unit="CPU µs/req (mean)"
[[ -n $CALLGRIND ]] && unit="instructions/req (callgrind)"
echo "| variant (wrk -c$CONNS, 1 shard, ${ROUNDS}x${DURATION}s interleaved) | requests | $unit | vs the same request, auth off | p99 per round |"
echo "|---|---:|---:|---:|---|"
for variant in none apikey-off apikey jwt-off jwt; do
    case $variant in
        none) label="plain request, authentication off" ;;
        apikey-off) label="with X-API-Key, authentication off" ;;
        apikey) label="with X-API-Key, authentication on (API key)" ;;
        jwt-off) label="with a bearer JWT, authentication off" ;;
        jwt) label="with a bearer JWT, authentication on (HS256, cached per shard)" ;;
    esac
    m=$(mean "$variant")
    same=none
    [[ $variant == apikey ]] && same=apikey-off
    [[ $variant == jwt ]] && same=jwt-off
    ratio=$(awk -v a="$m" -v b="$(mean "$same")" 'BEGIN { printf "%.3fx", a / b }')
    echo "| $label | ${REQ[$variant]} | $m | $ratio | ${P99[$variant]} |"
done
