#!/usr/bin/env bash
# bench/run.sh: the benchmark of SPEC §6, on one machine and loopback only.
#
# Starts 1000 mock MCP servers (`mcp-gateway fleet`), then runs the same wrk load through
# each proxy in turn: the static floor (`mcp-gateway static-floor`, no proxying: the cost
# floor of one request), mcp-gateway, nginx and HAProxy. Each proxy runs alone on CPU 0;
# the fleet and wrk share CPU 1. For each proxy it records throughput, p50/p99 latency,
# proxy CPU time per request and proxy RSS (both from /proc), prints one markdown table
# and the mcp-gateway/HAProxy ratios against the targets, then (unless --skip-10k) runs
# 10,000 concurrent keep-alive connections through each proxy. The tables also go to
# bench/results/latest.md.
#
# Usage: bench/run.sh [--duration S] [--connections N] [--skip-10k]
#                     [--only floor|gateway|nginx|haproxy[,...]] [--no-build]
#                     [--baseline BIN]
# --baseline BIN also runs BIN (an earlier mcp-gateway build) as the gateway, right after
# the current one, on the same config and load, and prints the CPU-per-request ratios of the
# current build to it (a change's cost, from the same run).
# Environment: DURATION (10), CONNS (64), WARMUP (2), DURATION_10K (10), CONNS_10K (10000),
#   PROXY_CPU (0), LOAD_CPU (1), WRK_TIMEOUT (wrk's own --timeout, unset: wrk's 2s),
#   KEEP_TMP=1 keeps the rendered configs and logs.
#
# Every process this script starts is stopped on exit (trap), so it can be rerun at will.

set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

# ---------------------------------------------------------------------------- settings
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
DURATION_10K=${DURATION_10K:-10}
CONNS_10K=${CONNS_10K:-10000}
# At 10,000 connections each request waits behind thousands of others (Little's law), so
# wrk's default 2 s timeout would count queueing as errors; the run is about holding them.
WRK_TIMEOUT_10K=${WRK_TIMEOUT_10K:-10s}
# Per-server connection caps: with 10,000 clients a proxy would otherwise open about as many
# upstream connections and run out of descriptors. mcp-gateway and HAProxy queue requests at
# the cap; nginx (open source) cannot queue at a cap, so it keeps no cap.
SERVER_MAXCONN=${SERVER_MAXCONN:-8}
# The gateway's MCP-path runs all go to this one server (in a group of its own, so it stays
# out of the default round-robin), uncapped so that no request queues for a connection.
MCP_BENCH_ID=mcp-bench
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-}
SKIP_10K=0
BUILD=1
BASELINE_BIN=${BASELINE_BIN:-}
ONLY="floor,gateway,nginx,haproxy"

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --connections) CONNS=${2:?--connections needs a number}; shift 2 ;;
        --connections=*) CONNS=${1#*=}; shift ;;
        --skip-10k) SKIP_10K=1; shift ;;
        --only) ONLY=${2:?--only needs floor, gateway, nginx or haproxy}; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --baseline) BASELINE_BIN=${2:?--baseline needs a binary}; shift 2 ;;
        --baseline=*) BASELINE_BIN=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

for v in DURATION CONNS WARMUP DURATION_10K CONNS_10K PROXY_CPU LOAD_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
IFS=',' read -r -a SELECTED <<<"$ONLY"
for p in "${SELECTED[@]}"; do
    case "$p" in
        floor|gateway|nginx|haproxy) ;;
        *) echo "run.sh: --only takes floor, gateway, nginx or haproxy (got '$p')" >&2; exit 2 ;;
    esac
done
selected() {
    local p want=${1%%_*}
    if [[ $want == baseline ]]; then
        [[ -n $BASELINE_BIN ]] || return 1
        want=gateway
    fi
    for p in "${SELECTED[@]}"; do [[ $p == "$want" ]] && return 0; done
    return 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BIN=$ROOT/target/release/mcp-gateway
RESULTS=$BENCH/results

# Loopback ports. The fleet takes FLEET_BASE .. FLEET_BASE+FLEET_N-1; upstream i (1-based)
# is 127.0.0.1:(FLEET_BASE-1+i).
FLEET_N=1000
FLEET_BASE=20001
FLOOR_PORT=18090
GATEWAY_PORT=18080
GATEWAY_DASHBOARD_PORT=18181
GATEWAY_WEBSOCKET_PORT=18182
NGINX_PORT=18083
HAPROXY_PORT=18084

declare -A LABEL=([floor]="static floor" [gateway]="mcp-gateway" [nginx]="nginx" [haproxy]="HAProxy"
    [gateway_mcp]="mcp-gateway, /mcp/{id}" [gateway_session]="mcp-gateway, /mcp/{id} + session"
    [baseline]="baseline build" [baseline_mcp]="baseline build, /mcp/{id}"
    [baseline_session]="baseline build, /mcp/{id} + session")
declare -A PORT=([floor]=$FLOOR_PORT [gateway]=$GATEWAY_PORT [baseline]=$GATEWAY_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ processes, cleanup
WORK=$(mktemp -d /tmp/mcp-bench.XXXXXX)
STARTED=()   # pids this script started and has not stopped yet

alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

stop_pid() {
    local pid=$1 i
    alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local keep=() p
    for p in "${STARTED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${STARTED[@]+"${STARTED[@]}"}"; do stop_pid "$p"; done
    if [[ ${KEEP_TMP:-0} == 1 || $rc -ne 0 ]]; then
        log "configs and logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID LOGFILE: until PORT accepts, or PID dies, or 30 s pass.
wait_port() {
    local port=$1 pid=$2 logfile=$3 i
    for ((i = 0; i < 300; i++)); do
        port_open "$port" && return 0
        if ! alive "$pid"; then
            log "process $pid exited before port $port answered; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    log "port $port did not answer within 30 s; last lines of $logfile:"
    tail -n 30 "$logfile" >&2 || true
    return 1
}

# The process and all its descendants (nginx: master and workers).
proc_tree() {
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            keep[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
            }
            for (p in keep) print p
        }'
}

# utime + stime (fields 14 and 15 of /proc/PID/stat, whole thread group) in clock ticks.
cpu_ticks() {
    local total=0 p t
    for p in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

rss_kib() {
    local total=0 p r
    for p in "$@"; do
        r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || r=0
        total=$((total + ${r:-0}))
    done
    echo "$total"
}

calc() { awk "BEGIN { $1 }" </dev/null; }

# ------------------------------------------------------------------------ 1. set-up
install_missing() {
    local need=() sudo=()
    command -v wrk >/dev/null || need+=(wrk)
    if selected nginx && ! command -v nginx >/dev/null; then need+=(nginx); fi
    if selected haproxy && ! command -v haproxy >/dev/null; then need+=(haproxy); fi
    command -v taskset >/dev/null || need+=(util-linux)
    command -v ps >/dev/null || need+=(procps)
    [[ ${#need[@]} -eq 0 ]] && return 0
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    log "installing ${need[*]}"
    # RUNLEVEL=1: the packages' init scripts do not start system nginx/haproxy services.
    if ! ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y --no-install-recommends "${need[@]}"; then
        ${sudo[@]+"${sudo[@]}"} apt-get update
        ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
            apt-get install -y --no-install-recommends "${need[@]}"
    fi
}

install_missing
command -v wrk >/dev/null || die "wrk is not installed"

if [[ $BUILD -eq 1 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x $BIN ]] || die "$BIN not found (build it with cargo build --release)"
[[ -z $BASELINE_BIN || -x $BASELINE_BIN ]] || die "baseline $BASELINE_BIN is not an executable"

ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
log "open-file limit: $NOFILE"
# In the 10k run a proxy holds a descriptor per client and, with every request in flight, up
# to one per upstream connection as well.
capped=$((FLEET_N * SERVER_MAXCONN))
((capped > CONNS_10K)) && capped=$CONNS_10K
NOFILE_10K=$((CONNS_10K + capped + 200))
if [[ $SKIP_10K -eq 0 ]] && ((NOFILE < NOFILE_10K)); then
    log "warning: the open-file limit ($NOFILE, hard $(ulimit -Hn)) is below the ~$NOFILE_10K the ${CONNS_10K}-connection run needs: proxies will run out of descriptors there"
fi

NCPU=$(nproc)
if ((PROXY_CPU >= NCPU || LOAD_CPU >= NCPU)); then
    die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU: this machine has $NCPU CPUs (0..$((NCPU - 1)))"
fi

for p in "${SELECTED[@]}"; do
    port_open "${PORT[$p]}" && die "port ${PORT[$p]} (${LABEL[$p]}) is already in use: a leftover from an earlier run?"
done
if selected gateway; then
    for port in $GATEWAY_DASHBOARD_PORT $GATEWAY_WEBSOCKET_PORT; do
        port_open "$port" && die "port $port (mcp-gateway management) is already in use"
    done
fi

# ----------------------------------------------------------------- rendered configs
# render TEMPLATE OUT SERVERS_FILE KEY=VALUE...: @KEY@ -> VALUE; a line holding @SERVERS@
# is replaced by the lines of SERVERS_FILE.
render() {
    local tpl=$1 out=$2 servers=$3
    shift 3
    awk -v servers="$servers" '
        BEGIN {
            for (i = 1; i < ARGC; i++) {
                eq = index(ARGV[i], "="); key["@" substr(ARGV[i], 1, eq - 1) "@"] = substr(ARGV[i], eq + 1)
                delete ARGV[i]
            }
            ARGC = 1   # the template comes on stdin
        }
        /@SERVERS@/ { while ((getline line < servers) > 0) print line; close(servers); next }
        { for (k in key) gsub(k, key[k]); print }
    ' "$@" <"$tpl" >"$out"
}

mkdir -p "$WORK/gateway" "$WORK/baseline" "$WORK/nginx" "$WORK/haproxy" "$WORK/floor" "$WORK/fleet" "$WORK/wrk"
for ((i = 1; i <= FLEET_N; i++)); do
    port=$((FLEET_BASE - 1 + i))
    sep=','
    ((i == FLEET_N)) && sep=''
    printf '      { "id": "mcp-server-%d", "url": "http://127.0.0.1:%d/mcp", "maxConnections": %d }%s\n' "$i" "$port" "$SERVER_MAXCONN" "$sep" >>"$WORK/gateway/servers"
    printf '        server 127.0.0.1:%d;\n' "$port" >>"$WORK/nginx/servers"
    printf '    server mcp-server-%d 127.0.0.1:%d maxconn %d\n' "$i" "$port" "$SERVER_MAXCONN" >>"$WORK/haproxy/servers"
done

printf '      ,{ "id": "%s", "url": "http://127.0.0.1:%d/mcp", "maxConnections": 1000, "group": "bench" }\n' \
    "$MCP_BENCH_ID" "$FLEET_BASE" >>"$WORK/gateway/servers"

render "$BENCH/gateway.jsonc.tmpl" "$WORK/gateway/config.jsonc" "$WORK/gateway/servers" \
    PORT="$GATEWAY_PORT" DASHBOARD_PORT="$GATEWAY_DASHBOARD_PORT" WEBSOCKET_PORT="$GATEWAY_WEBSOCKET_PORT"
cp "$WORK/gateway/config.jsonc" "$WORK/baseline/config.jsonc"
USER_LINE="# (not root: nginx keeps the current user)"
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
render "$BENCH/nginx.conf.tmpl" "$WORK/nginx/nginx.conf" "$WORK/nginx/servers" \
    PORT="$NGINX_PORT" DIR="$WORK/nginx" NOFILE="$NOFILE" USER_LINE="$USER_LINE"
render "$BENCH/haproxy.cfg.tmpl" "$WORK/haproxy/haproxy.cfg" "$WORK/haproxy/servers" \
    PORT="$HAPROXY_PORT"

# ------------------------------------------------------------------------- 2. fleet
for port in $FLEET_BASE $((FLEET_BASE + FLEET_N - 1)); do
    port_open "$port" && die "fleet port $port is already in use: a leftover from an earlier run?"
done
log "starting the fleet: $FLEET_N mock MCP servers on 127.0.0.1:$FLEET_BASE..$((FLEET_BASE + FLEET_N - 1)), CPU $LOAD_CPU"
taskset -c "$LOAD_CPU" "$BIN" fleet --servers "$FLEET_N" --base-port "$FLEET_BASE" --threads 1 \
    >"$WORK/fleet/log" 2>&1 &
FLEET_PID=$!
STARTED+=("$FLEET_PID")
wait_port "$FLEET_BASE" "$FLEET_PID" "$WORK/fleet/log" || die "the fleet did not start"
wait_port "$((FLEET_BASE + FLEET_N - 1))" "$FLEET_PID" "$WORK/fleet/log" || die "the fleet did not start"

# -------------------------------------------------------------------------- 3. proxies
# start_proxy NAME: starts it pinned to PROXY_CPU; sets PROXY_PID and PROXY_LOG.
start_proxy() {
    local name=$1 dir=$WORK/$1
    PROXY_LOG=$dir/log
    case "$name" in
        floor)
            taskset -c "$PROXY_CPU" "$BIN" static-floor --port "$FLOOR_PORT" >"$PROXY_LOG" 2>&1 &
            ;;
        gateway|baseline)
            local bin=$BIN
            [[ $name == baseline ]] && bin=$BASELINE_BIN
            if ! "$bin" check "$dir/config.jsonc" >"$dir/check.log" 2>&1; then
                cat "$dir/check.log" >&2
                return 1
            fi
            taskset -c "$PROXY_CPU" "$bin" --config "$dir/config.jsonc" >"$PROXY_LOG" 2>&1 &
            ;;
        nginx)
            PROXY_LOG=$dir/error.log
            if ! nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/check.log" 2>&1; then
                cat "$dir/check.log" >&2
                return 1
            fi
            taskset -c "$PROXY_CPU" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
                >"$dir/stdout.log" 2>&1 &
            ;;
        haproxy)
            if ! haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1; then
                cat "$dir/check.log" >&2
                return 1
            fi
            taskset -c "$PROXY_CPU" haproxy -db -f "$dir/haproxy.cfg" >"$PROXY_LOG" 2>&1 &
            ;;
    esac
    PROXY_PID=$!
    STARTED+=("$PROXY_PID")
    wait_port "${PORT[$name]}" "$PROXY_PID" "$PROXY_LOG"
}

# run_wrk CONNS SECONDS PORT OUTFILE [TIMEOUT]
run_wrk() {
    local conns=$1 secs=$2 port=$3 out=$4 timeout=()
    local t=${5:-$WRK_TIMEOUT}
    [[ -n $t ]] && timeout=(--timeout "$t")
    # In the background and waited for, so that INT/TERM reach the trap at once (bash runs
    # traps only after a foreground child ends) and the cleanup stops wrk too.
    taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${secs}s" "${timeout[@]+"${timeout[@]}"}" --latency \
        -s "$BENCH/post.lua" "http://127.0.0.1:$port/" >"$out" 2>&1 &
    local wrk_pid=$!
    STARTED+=("$wrk_pid")
    wait "$wrk_pid" || true
    forget_pid "$wrk_pid"
}

# parse_wrk FILE: prints "requests rps p50_us p99_us connect read write timeout non2xx",
# or nothing when FILE holds no wrk summary. Latencies come as 123.45us, 1.20ms, 2.00s,
# 1.00m; totals are plain integers.
parse_wrk() {
    awk '
        function us(v,   n, u) {
            if (!match(v, /^[0-9.]+/)) return -1
            n = substr(v, 1, RLENGTH) + 0; u = substr(v, RLENGTH + 1)
            if (u == "us") return n
            if (u == "ms") return n * 1000
            if (u == "s") return n * 1000000
            if (u == "m") return n * 60000000
            if (u == "h") return n * 3600000000
            return -1
        }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        /Socket errors:/ {
            line = $0; sub(/.*Socket errors: */, "", line); gsub(/,/, "", line)
            n = split(line, f, " ")
            for (i = 1; i + 1 <= n; i += 2) err[f[i]] = f[i + 1]
        }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        END {
            if (req == "" || rps == "") exit
            printf "%d %s %s %s %d %d %d %d %d\n", req, rps, (p50 == "" ? -1 : p50), (p99 == "" ? -1 : p99),
                err["connect"], err["read"], err["write"], err["timeout"], non2xx
        }' "$1"
}

fmt_lat() { # microseconds -> "480 µs" / "1.20 ms" / "2.10 s"
    calc "v = $1; if (v < 0) print \"n/a\"; else if (v < 1000) printf \"%.0f µs\", v; else if (v < 1000000) printf \"%.2f ms\", v / 1000; else printf \"%.2f s\", v / 1000000"
}

# Results, by proxy name.
declare -A R_RPS R_P50 R_P99 R_CPU R_RSS R_ERR R_BAD R_REQ
declare -A K_RPS K_P99 K_CONNECT K_READ K_WRITE K_TIMEOUT K_NON2XX K_RSS K_HELD K_NOTE
CLK_TCK=$(getconf CLK_TCK)
HAVE_SS=0
command -v ss >/dev/null && HAVE_SS=1

bench_proxy() {
    local name=$1 port=${PORT[$1]}
    log "${LABEL[$name]}: starting on 127.0.0.1:$port, CPU $PROXY_CPU"
    if ! start_proxy "$name"; then
        R_ERR[$name]="⚠ failed to start (see above)"
        R_BAD[$name]=1
        [[ -n ${PROXY_PID:-} ]] && { stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"; }
        PROXY_PID=
        return 0
    fi
    log "${LABEL[$name]}: warm-up ${WARMUP}s, -c$CONNS"
    run_wrk "$CONNS" "$WARMUP" "$port" "$WORK/wrk/$name-warmup.txt"
    measure "$name" "$port"
    if [[ $name == gateway || $name == baseline ]] && alive "$PROXY_PID"; then
        bench_mcp_paths "$port" "$name"
    fi
    if ! alive "$PROXY_PID"; then
        R_ERR[$name]="${R_ERR[$name]} ⚠ exited during the run"
        R_BAD[$name]=1
        log "${LABEL[$name]} exited during the run; last lines of $PROXY_LOG:"
        tail -n 30 "$PROXY_LOG" >&2 || true
    elif [[ $SKIP_10K -eq 0 && $name != floor && $name != baseline ]]; then
        bench_10k "$name"
    fi
    log "${LABEL[$name]}: stopping"
    stop_pid "$PROXY_PID"
    forget_pid "$PROXY_PID"
    PROXY_PID=
}

# The MCP path of the running gateway: tools/call to one server through /mcp/{id}, without
# and with a session token (from an initialize through the gateway), to show what session
# affinity costs per request against the plain proxy path above.
bench_mcp_paths() {
    local port=$1 key=$2 token
    token=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/mcp/$MCP_BENCH_ID" \
        -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' |
        tr -d '\r' | awk -F': ' 'tolower($1) == "mcp-session-id" {print $2}')
    if [[ -z $token ]]; then
        R_ERR[${key}_session]="⚠ no session token from initialize"
        R_BAD[${key}_session]=1
    fi
    MCP_PATH="/mcp/$MCP_BENCH_ID" measure "${key}_mcp" "$port"
    [[ -n $token ]] && MCP_PATH="/mcp/$MCP_BENCH_ID" MCP_SESSION=$token measure "${key}_session" "$port"
    return 0
}

# measure KEY PORT: one measured wrk run against the running proxy, into the R_* tables.
measure() {
    local name=$1 port=$2 pids t0 t1 rss parsed w
    mapfile -t pids < <(proc_tree "$PROXY_PID")
    log "${LABEL[$name]}: measuring ${DURATION}s, -c$CONNS (pids ${pids[*]})"
    t0=$(cpu_ticks "${pids[@]}")
    run_wrk "$CONNS" "$DURATION" "$port" "$WORK/wrk/$name.txt"
    t1=$(cpu_ticks "${pids[@]}")
    rss=$(rss_kib "${pids[@]}")
    sed 's/^/    /' "$WORK/wrk/$name.txt" >&2
    parsed=$(parse_wrk "$WORK/wrk/$name.txt")
    if [[ -z $parsed ]]; then
        R_ERR[$name]="⚠ wrk failed: $(tail -n 1 "$WORK/wrk/$name.txt" | tr '|' '/')"
        R_BAD[$name]=1
    else
        read -r -a w <<<"$parsed"
        R_REQ[$name]=${w[0]}
        R_RPS[$name]=${w[1]}
        R_P50[$name]=${w[2]}
        R_P99[$name]=${w[3]}
        R_CPU[$name]=$(calc "if (${w[0]} > 0) printf \"%.2f\", ($t1 - $t0) * 1000000 / $CLK_TCK / ${w[0]}; else print \"n/a\"")
        R_RSS[$name]=$(calc "printf \"%.1f\", $rss / 1024")
        local e=()
        ((w[8] > 0)) && e+=("non-2xx/3xx ${w[8]}")
        ((w[4] > 0)) && e+=("connect ${w[4]}")
        ((w[5] > 0)) && e+=("read ${w[5]}")
        ((w[6] > 0)) && e+=("write ${w[6]}")
        ((w[7] > 0)) && e+=("timeout ${w[7]}")
        if ((${#e[@]} > 0)); then
            R_ERR[$name]="⚠ $(IFS=','; echo "${e[*]}" | sed 's/,/, /g')"
            R_BAD[$name]=1
        else
            R_ERR[$name]="0"
        fi
    fi
}

# 5. CONNS_10K concurrent keep-alive clients through the running proxy.
bench_10k() {
    local name=$1 port=${PORT[$1]} pids parsed w sampler=
    mapfile -t pids < <(proc_tree "$PROXY_PID")
    log "${LABEL[$name]}: ${CONNS_10K} connections, ${DURATION_10K}s"
    rm -f "$WORK/wrk/$name-held"
    if [[ $HAVE_SS -eq 1 ]]; then
        # Mid-run: how many client connections the proxy holds open (its side of them).
        (
            sleep "$(calc "print $DURATION_10K * 0.6")"
            ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l >"$WORK/wrk/$name-held"
        ) &
        sampler=$!
        STARTED+=("$sampler")
    fi
    run_wrk "$CONNS_10K" "$DURATION_10K" "$port" "$WORK/wrk/$name-10k.txt" "$WRK_TIMEOUT_10K"
    if [[ -n $sampler ]]; then
        wait "$sampler" 2>/dev/null || true
        forget_pid "$sampler"
    fi
    sed 's/^/    /' "$WORK/wrk/$name-10k.txt" >&2
    K_RSS[$name]=$(calc "printf \"%.1f\", $(rss_kib "${pids[@]}") / 1024")
    K_HELD[$name]=$(cat "$WORK/wrk/$name-held" 2>/dev/null || echo n/a)
    parsed=$(parse_wrk "$WORK/wrk/$name-10k.txt")
    if [[ -z $parsed ]]; then
        K_NOTE[$name]="⚠ wrk failed: $(tail -n 1 "$WORK/wrk/$name-10k.txt" | tr '|' '/')"
        return 0
    fi
    read -r -a w <<<"$parsed"
    K_RPS[$name]=${w[1]}
    K_P99[$name]=${w[3]}
    K_CONNECT[$name]=${w[4]}
    K_READ[$name]=${w[5]}
    K_WRITE[$name]=${w[6]}
    K_TIMEOUT[$name]=${w[7]}
    K_NON2XX[$name]=${w[8]}
    if ! alive "$PROXY_PID"; then
        K_NOTE[$name]="⚠ exited during the run"
        tail -n 30 "$PROXY_LOG" >&2 || true
    fi
}

for name in floor gateway baseline nginx haproxy; do
    selected "$name" || continue
    bench_proxy "$name"
done

# ---------------------------------------------------------------------------- 4. report
ratio_line() { # LABEL NUM DEN TARGET_EXPR(with r) TARGET_TEXT
    local label=$1 num=${2:-} den=${3:-} cond=$4 text=$5
    if [[ -z $num || -z $den || $num == n/a || $den == n/a ]]; then
        echo "- $label: n/a ($text)"
        return 0
    fi
    calc "r = ($den > 0) ? $num / $den : -1;
          if (r < 0) { print \"- $label: n/a ($text)\"; exit }
          ok = ($cond) ? \"PASS\" : \"FAIL\";
          printf \"- $label: %.2fx (%s) %s\n\", r, \"$text\", ok"
}

report() {
    local cpu_model name
    cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
    echo "## mcp-gateway benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: nproc $(nproc), CPU ${cpu_model:-unknown}, kernel $(uname -r)"
    echo "- load: wrk -t1 -c$CONNS -d${DURATION}s (after a ${WARMUP}s warm-up), POST / of an MCP tools/call (bench/post.lua)"
    echo "- pinning: each proxy alone on CPU $PROXY_CPU; the fleet ($FLEET_N mock MCP servers, 1 thread) and wrk share CPU $LOAD_CPU"
    echo "- versions: $(nginx -v 2>&1 | sed 's/^nginx version: //' || echo 'nginx n/a'), $(haproxy -v 2>/dev/null | head -n 1 | awk '{print "HAProxy " $3}' || echo 'HAProxy n/a'), $(wrk -v 2>&1 | head -n 1 | awk '{print "wrk " $2}' || true)"
    echo "- CPU µs/req: proxy utime+stime (all its processes and threads, /proc) over the measured run / requests; RSS: VmRSS summed over its processes after the run"
    echo
    echo "| proxy | rps | p50 | p99 | CPU µs/req | RSS MiB | errors |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for name in floor gateway gateway_mcp gateway_session baseline baseline_mcp baseline_session nginx haproxy; do
        selected "$name" || continue
        if [[ -z ${R_RPS[$name]:-} ]]; then
            echo "| ${LABEL[$name]} | - | - | - | - | - | ${R_ERR[$name]:-not run} |"
            continue
        fi
        printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "${LABEL[$name]}" "${R_RPS[$name]}" \
            "$(fmt_lat "${R_P50[$name]}")" "$(fmt_lat "${R_P99[$name]}")" "${R_CPU[$name]}" \
            "${R_RSS[$name]}" "${R_ERR[$name]}"
    done
    echo
    if selected gateway && selected haproxy; then
        echo "mcp-gateway vs HAProxy:"
        echo
        ratio_line "throughput" "${R_RPS[gateway]:-}" "${R_RPS[haproxy]:-}" "r >= 1.2" "target >= 1.2x"
        ratio_line "CPU per request" "${R_CPU[gateway]:-}" "${R_CPU[haproxy]:-}" "r <= 0.8" "target <= 0.8x"
        ratio_line "p99 latency" "${R_P99[gateway]:-}" "${R_P99[haproxy]:-}" "r <= 1.0" "target <= 1.0x, no worse"
        if [[ -n ${R_RSS[gateway]:-} ]]; then
            calc "ok = (${R_RSS[gateway]} < 64) ? \"PASS\" : \"FAIL\"; printf \"- RSS with $FLEET_N upstreams: %s MiB (target < 64 MiB) %s\n\", \"${R_RSS[gateway]}\", ok"
        else
            echo "- RSS with $FLEET_N upstreams: n/a (target < 64 MiB)"
        fi
        if [[ -n ${R_CPU[gateway_session]:-} ]]; then
            ratio_line "MCP path with a session token, CPU per request vs the plain path" "${R_CPU[gateway_session]}" "${R_CPU[gateway]:-}" "r <= 1.1" "target <= 1.1x"
        fi
        if [[ -n ${R_BAD[gateway]:-} || -n ${R_BAD[haproxy]:-} ]]; then
            echo "- ⚠ a run above had errors: these ratios are not trustworthy"
        fi
        echo
    fi
    if selected baseline; then
        echo "This build vs the baseline build (${BASELINE_BIN}), CPU per request:"
        echo
        for path in "" _mcp _session; do
            ratio_line "${LABEL[gateway$path]}" "${R_CPU[gateway$path]:-}" "${R_CPU[baseline$path]:-}" "r <= 1.05" "target <= 1.05x"
        done
        echo
    fi
    if selected gateway && selected floor && [[ -n ${R_CPU[gateway]:-} && -n ${R_CPU[floor]:-} ]]; then
        calc "if (${R_CPU[floor]} > 0) printf \"mcp-gateway CPU per request vs the static floor: %.2fx\n\n\", ${R_CPU[gateway]} / ${R_CPU[floor]}"
    fi
    if [[ $SKIP_10K -eq 0 ]]; then
        echo "### ${CONNS_10K} concurrent keep-alive connections"
        echo
        echo "wrk -t1 -c${CONNS_10K} -d${DURATION_10K}s --timeout ${WRK_TIMEOUT_10K}, right after the run above on the same proxy process; open-file limit $NOFILE. held: client connections the proxy had established ${DURATION_10K}s x 0.6 into the run (ss)."
        echo
        if ((NOFILE < NOFILE_10K)); then
            echo "⚠ The open-file limit here ($NOFILE; hard limit $(ulimit -Hn); raising the hard limit needs CAP_SYS_RESOURCE) is below the ~$NOFILE_10K descriptors a proxy needs for ${CONNS_10K} clients plus its capped upstream connections (${SERVER_MAXCONN} per server): errors in this table are then mostly the proxies running out of descriptors (nginx, which keeps no per-server cap, closes keep-alive clients: \"worker_connections are not enough\"), not a proxy defect. Rerun where \`ulimit -n\` can reach $NOFILE_10K."
            echo
        fi
        echo "| proxy | rps | p99 | connect err | read err | write err | timeouts | non-2xx/3xx | held | RSS MiB |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for name in gateway nginx haproxy; do
            selected "$name" || continue
            if [[ -z ${K_RPS[$name]:-} ]]; then
                echo "| ${LABEL[$name]} | - | - | - | - | - | - | - | ${K_HELD[$name]:--} | ${K_RSS[$name]:--} ${K_NOTE[$name]:-${R_ERR[$name]:-not run}} |"
                continue
            fi
            printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s%s |\n' "${LABEL[$name]}" "${K_RPS[$name]}" \
                "$(fmt_lat "${K_P99[$name]}")" "${K_CONNECT[$name]}" "${K_READ[$name]}" "${K_WRITE[$name]}" \
                "${K_TIMEOUT[$name]}" "${K_NON2XX[$name]}" "${K_HELD[$name]}" "${K_RSS[$name]}" \
                "${K_NOTE[$name]:+ ${K_NOTE[$name]}}"
        done
        echo
    fi
}

mkdir -p "$RESULTS"
report >"$WORK/report.md"
echo
cat "$WORK/report.md"
cp "$WORK/report.md" "$RESULTS/latest.md"
log "written to ${RESULTS#"$ROOT"/}/latest.md"
