#!/usr/bin/env bash
# bench/reload.sh: hot reload under load (issue "live configuration", SPEC §6 style).
#
# Starts 4 mock MCP servers (`mcp-gateway fleet`) and the gateway in front of three of them
# (a, b, c in the default group), then runs `wrk -c64` (POST of an MCP tools/call, bench/post.lua) on `/` for DURATION+4 seconds while
# rewriting the config file 10 times in 10 seconds: weights changed, server d added (step 3),
# server c removed (step 6), the policy of b changed (odd steps); half the writes replace the
# file (write and rename, as editors and kubectl do), half rewrite it in place.
# Prints a table: requests, non-2xx answers, socket errors, how long the added server took
# to get its first request after the write that added it, whether the removed one drained,
# and the pool counters (connections opened vs reused) before and after the reloads.
#
# Usage: bench/reload.sh [--no-build]
# Environment: DURATION (10), CONNS (64), PROXY_CPU (0), LOAD_CPU (1).

set -euo pipefail
export LC_ALL=C
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/mcp-gateway
WORK=$(mktemp -d /tmp/mcp-reload.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet --bin mcp-gateway)
fi

BASE=21001   # fleet: a b c d on 21001..21004
GW=18480
MGMT=18481
taskset -c "$LOAD_CPU" "$BIN" fleet --servers 4 --base-port $BASE >"$WORK/fleet.log" 2>&1 &
PIDS+=($!)

# config STEP: the config of rewrite STEP (0: the start).
config() {
    local step=$1 servers policy
    local wa=$((1 + step % 3))
    policy=''
    ((step % 2 == 1)) && policy=', "policy": {"deny": ["tools/call"]}'
    servers="{\"id\":\"a\",\"url\":\"http://127.0.0.1:$BASE/mcp\",\"weight\":$wa}"
    servers+=",{\"id\":\"b\",\"url\":\"http://127.0.0.1:$((BASE + 1))/mcp\",\"weight\":2$policy}"
    ((step < 6)) && servers+=",{\"id\":\"c\",\"url\":\"http://127.0.0.1:$((BASE + 2))/mcp\"}"
    ((step >= 3)) && servers+=",{\"id\":\"d\",\"url\":\"http://127.0.0.1:$((BASE + 3))/mcp\"}"
    cat <<JSON
{
  "server": {"host": "127.0.0.1", "port": $GW, "workers": 1},
  "upstream": {"servers": [$servers], "healthCheck": {"enabled": false}},
  "monitoring": {"dashboard": {"port": $MGMT}},
  "logging": {"level": "info"}
}
JSON
}

CFG=$WORK/gateway.json
config 0 >"$CFG"
taskset -c "$PROXY_CPU" "$BIN" --config "$CFG" >"$WORK/gateway.out" 2>"$WORK/gateway.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$MGMT/health" >/dev/null && break; sleep 0.1; done

stats() { curl -sf "http://127.0.0.1:$MGMT/stats"; }
requests_of() { stats | jq -r --arg id "$1" '[.upstreams[] | select(.id == $id) | .requests] | add // 0'; }

taskset -c "$LOAD_CPU" wrk -t2 -c"$CONNS" -d"$((DURATION + 4))s" --latency -s "$ROOT/bench/post.lua" "http://127.0.0.1:$GW/" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
PIDS+=($WRK)
sleep 2
before=$(stats)
added_ms=""
interval=$(awk -v d="$DURATION" 'BEGIN { print d / 10 }')
for step in $(seq 1 10); do
    config "$step" >"$WORK/next.json"
    if ((step % 2 == 0)); then
        mv "$WORK/next.json" "$CFG"
    else
        cat "$WORK/next.json" >"$CFG"
    fi
    if ((step == 3)); then
        t0=$(date +%s%N)
        for _ in $(seq 200); do
            [[ $(requests_of d) -gt 0 ]] && { added_ms=$((($(date +%s%N) - t0) / 1000000)); break; }
            sleep 0.01
        done
    fi
    sleep "$interval"
done
wait "$WRK" || true
after=$(stats)
info=$(curl -sf "http://127.0.0.1:$MGMT/info")
drained=$(grep -c 'removed server drained' "$WORK/gateway.log" || true)
refused=$(grep -c 'config reload refused' "$WORK/gateway.log" || true)

reqs=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk.txt")
sockerr=$(awk '/Socket errors/ { print $0 }' "$WORK/wrk.txt")
rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.txt")
p99=$(awk '/ 99%/ { print $2 }' "$WORK/wrk.txt")
o0=$(jq .upstreamConnections.opened <<<"$before"); r0=$(jq .upstreamConnections.reused <<<"$before")
o1=$(jq .upstreamConnections.opened <<<"$after"); r1=$(jq .upstreamConnections.reused <<<"$after")

echo
echo "| wrk -c$CONNS, 10 rewrites in ${DURATION} s | value |"
echo "|---|---:|"
echo "| requests (rps) | $reqs ($rps) |"
echo "| p99 | $p99 |"
echo "| non-2xx answers | ${non2xx:-0} |"
echo "| socket errors | ${sockerr:-none} |"
echo "| generation reached | $(jq .config.generation <<<"$info") (reloads ok $(jq .config.reloads.applied <<<"$info"), refused $refused) |"
echo "| added server's first request after its write | ${added_ms:-not within 2 s} ms |"
echo "| removed server drained (log lines) | $drained |"
echo "| upstream connections opened during the reloads | $((o1 - o0)) |"
echo "| upstream connections reused during the reloads | $((r1 - r0)) |"
if [[ -n ${non2xx:-} || -n ${sockerr:-} ]]; then
    echo "FAIL: requests failed during reloads" >&2
    exit 1
fi
