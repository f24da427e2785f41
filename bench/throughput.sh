#!/usr/bin/env bash
# bench/throughput.sh: requests/s and p50/p99 latency of levee next to HAProxy
# and nginx, all in front of the same backend and under the same load.
#
# Targets, each measured in turn with the same load generator settings:
#   direct   the load generator talks to the backend itself (harness ceiling)
#   levee    levee run --worker-threads N
#   levee-resilience  the same with its resilience features on (not in the
#            default list; templates/levee-resilience.toml.tmpl)
#   haproxy  nbthread N, keep-alive + http-reuse always, no logging
#   nginx    worker_processes N, upstream keepalive, access_log off
# N is BENCH_PROXY_THREADS (default 1); BENCH_PROXY_THREADS=2 compares the
# three at two threads (levee alone: BENCH_LEVEE_THREADS).
# A proxy that is not installed is skipped. Each proxy is started fresh on free
# loopback ports, waited for, warmed up, measured, and stopped.
#
# Usage: bench/throughput.sh            (see bench/README.md for the knobs)
# Env:   BENCH_DURATION=10s BENCH_WARMUP=2s BENCH_CONNECTIONS=64
#        BENCH_LOAD=auto|wrk|testkit BENCH_TARGETS="direct levee haproxy nginx"
#        BENCH_BACKEND=testkit|nginx
#        BENCH_PIN=auto|0 BENCH_CPU_BACKEND, BENCH_CPU_LOAD, BENCH_CPU_PROXY
#        BENCH_PROXY_THREADS=1 BENCH_LEVEE_THREADS=$BENCH_PROXY_THREADS
#        BENCH_LOAD_THREADS=1 BENCH_BUILD=1 BENCH_OUT=bench/out
#        BENCH_ROUNDS=1 BENCH_KEEP_TMP=0
#
# Only 127.0.0.1 is ever contacted.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
TEMPLATES=$BENCH_DIR/templates

# ---------------------------------------------------------------- settings

# A bare number is seconds; otherwise wrk-style "10s", "1m".
normalize_duration() {
    local d=$1
    [[ $d =~ ^[0-9]+$ ]] && d="${d}s"
    [[ $d =~ ^[0-9]+(s|m)$ ]] || { echo "throughput.sh: bad duration '$1' (want e.g. 10s)" >&2; exit 2; }
    echo "$d"
}
duration_seconds() {
    local d=$1
    case $d in
        *m) echo $((${d%m} * 60)) ;;
        *s) echo "${d%s}" ;;
    esac
}

DURATION=$(normalize_duration "${BENCH_DURATION:-10s}")
WARMUP=$(normalize_duration "${BENCH_WARMUP:-2s}")
CONNECTIONS=${BENCH_CONNECTIONS:-64}
LOAD=${BENCH_LOAD:-auto}
# The backend every target proxies to: levee-testkit's, or nginx answering
# the same bytes for less CPU (the core it shares with the load generator is
# what holds the proxies back; see bench/README.md).
BACKEND=${BENCH_BACKEND:-testkit}
TARGETS=${BENCH_TARGETS:-direct levee haproxy nginx}
PIN=${BENCH_PIN:-auto}
# Threads (HAProxy nbthread, nginx worker_processes, levee --worker-threads)
# of every proxy; BENCH_LEVEE_THREADS sets levee's alone.
PROXY_THREADS=${BENCH_PROXY_THREADS:-1}
LEVEE_THREADS=${BENCH_LEVEE_THREADS:-$PROXY_THREADS}
LOAD_THREADS=${BENCH_LOAD_THREADS:-1}
BUILD=${BENCH_BUILD:-1}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
ROUNDS=${BENCH_ROUNDS:-1}
# A request slower than this counts as an error (testkit) / a timeout (wrk).
REQUEST_TIMEOUT=2s

[[ $BACKEND == testkit || $BACKEND == nginx ]] || { echo "throughput.sh: BENCH_BACKEND must be testkit or nginx" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "throughput.sh: BENCH_ROUNDS must be a positive integer" >&2; exit 2; }
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || { echo "throughput.sh: BENCH_CONNECTIONS must be a positive integer" >&2; exit 2; }
[[ $PROXY_THREADS =~ ^[1-9][0-9]*$ && $LEVEE_THREADS =~ ^[1-9][0-9]*$ ]] ||
    { echo "throughput.sh: BENCH_PROXY_THREADS and BENCH_LEVEE_THREADS must be positive integers" >&2; exit 2; }
((CONNECTIONS >= LOAD_THREADS)) || { echo "throughput.sh: BENCH_CONNECTIONS must be >= BENCH_LOAD_THREADS" >&2; exit 2; }
# Upstream keep-alive pool of the proxies: 64 (nginx's usual setting), or the
# connection count when it is larger, so no proxy has to open and close
# upstream connections during the run.
POOL=$((CONNECTIONS > 64 ? CONNECTIONS : 64))

log() { echo "throughput.sh: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
[[ $BACKEND == nginx ]] && ! have nginx && { echo "throughput.sh: BENCH_BACKEND=nginx needs nginx installed" >&2; exit 2; }

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d "${TMPDIR:-/tmp}/levee-bench.XXXXXX")
PIDS=()

# Stop one child: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Drop a pid that has been waited for from the list cleanup() stops.
forget_pid() {
    local kept=() p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p == "$1" ]] || kept+=("$p"); done
    PIDS=("${kept[@]+"${kept[@]}"}")
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept temp dir $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------- CPU pinning
#
# Two cores, shared by three busy processes (load generator, proxy, backend).
# Default: backend + load generator on the first allowed CPU, the proxy alone
# on the second. Why this split:
#   - The proxy is what we compare, so it gets a core of its own that nothing
#     else in the bench competes for: its req/s then reflects its own cost
#     per request, not how well the scheduler interleaves it with wrk.
#   - The backend and the load generator do the same work per request for
#     every target, so sharing a core costs every target the same. The
#     "direct" row measures exactly that shared core's ceiling: if a proxy
#     gets close to "direct", the harness, not the proxy, is the limit.
#   - The alternative (load generator alone, proxy + backend together) would
#     charge the proxy for the backend's CPU time and blur the comparison.
# Override with BENCH_CPU_BACKEND / BENCH_CPU_LOAD / BENCH_CPU_PROXY (taskset
# lists such as "0" or "2,3"), or turn pinning off with BENCH_PIN=0. Pinning
# is also off without taskset or with fewer than two usable CPUs.
# With more than one proxy thread (BENCH_PROXY_THREADS, BENCH_LEVEE_THREADS)
# the proxy gets the CPUs after the first, one per thread; if there are not
# that many (2 threads on a 2-CPU machine), nothing is pinned unless
# BENCH_CPU_PROXY says where: every process then shares every CPU, and
# req/cpu-s, not req/s, is the figure to compare.

allowed_cpus() {
    # The CPUs this shell may run on, expanded ("0-2,5" -> "0 1 2 5").
    local list part out=()
    list=$(taskset -cp $$ 2>/dev/null | sed -n 's/.*list: *//p')
    IFS=, read -ra parts <<<"$list"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then
            out+=($(seq "${part%-*}" "${part#*-}"))
        else
            out+=("$part")
        fi
    done
    echo "${out[@]}"
}

PINNING=0
CPU_BACKEND="" CPU_LOAD="" CPU_PROXY=""
if [[ $PIN != 0 ]] && have taskset; then
    read -ra CPUS <<<"$(allowed_cpus)"
    MAX_THREADS=$((PROXY_THREADS > LEVEE_THREADS ? PROXY_THREADS : LEVEE_THREADS))
    if ((${#CPUS[@]} >= 2)) && [[ -z ${BENCH_CPU_PROXY:-} ]] && ((${#CPUS[@]} < MAX_THREADS + 1)); then
        log "$MAX_THREADS proxy threads and ${#CPUS[@]} CPUs: not pinning (set BENCH_CPU_PROXY to pin anyway)"
    elif ((${#CPUS[@]} >= 2)); then
        PINNING=1
        CPU_BACKEND=${BENCH_CPU_BACKEND:-${CPUS[0]}}
        CPU_LOAD=${BENCH_CPU_LOAD:-${CPUS[0]}}
        CPU_PROXY=${BENCH_CPU_PROXY:-$(IFS=,; echo "${CPUS[*]:1:MAX_THREADS}")}
    else
        log "fewer than two usable CPUs: not pinning"
    fi
elif [[ $PIN != 0 ]]; then
    log "taskset not found: not pinning"
fi

# Start a child in the background, pinned to $2 (a taskset list, or "" for no
# pinning), output to $3. Sets LAST_PID. taskset execs the command, so the pid
# is the command's own.
start_bg() {
    local cpu=$1 out=$2
    shift 2
    if ((PINNING)) && [[ -n $cpu ]]; then
        taskset -c "$cpu" "$@" >"$out" 2>&1 &
    else
        "$@" >"$out" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# ---------------------------------------------------------------- ports, HTTP

USED_PORTS=" "
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port VAR: a port below the ephemeral range (so no outgoing connection
# of the run can be sitting on it) that nothing listens on.
free_port() {
    local low p i
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((low > 20100)) || low=60000
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + RANDOM % (low - 20000)))
        [[ $USED_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        USED_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    log "no free port found"
    return 1
}

# http_ok URL: the URL answers 200 within a second.
http_ok() {
    local url=$1
    if have curl; then
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --noproxy '*' "$url" 2>/dev/null) == 200 ]]
        return
    fi
    local rest=${url#http://} hostport path line
    hostport=${rest%%/*}
    path=/${rest#*/}
    [[ $rest == */* ]] || path=/
    (
        exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
        IFS= read -r -t 1 line <&3 || exit 1
        [[ $line == "HTTP/1."?" 200"* ]]
    ) 2>/dev/null
}

# wait_ready PID URL [SECONDS]: until URL answers 200; fails if PID exits.
wait_ready() {
    local pid=$1 url=$2 limit=${3:-15} i
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        http_ok "$url" && return 0
        sleep 0.1
    done
    return 1
}

# cpu_ticks PID [sys]: user+system CPU time (clock ticks) of PID and its
# direct children (nginx's worker is a child of its master), or "" without
# /proc; with "sys", the system (kernel) part only.
cpu_ticks() {
    local pid=$1 fields='$12 + $13' total=0 p stat found=0
    [[ ${2:-} == sys ]] && fields='$13'

    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        found=1
        stat=${stat##*) }
        # After the command name: state is field 3, utime 14, stime 15.
        total=$((total + $(awk "{print $fields}" <<<"$stat")))
    done
    ((found)) && echo "$total" || echo ""
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# Busy ticks of the whole machine (all CPUs: user, nice, system, irq,
# softirq, steal), or "".
machine_busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat 2>/dev/null || echo ""
}
# children_cpu_seconds VAR: CPU seconds of this shell's finished children
# (the load generator once waited for), from the shell's `times` builtin,
# which must run in this shell, not in a $(...) subshell.
children_cpu_seconds() {
    times >"$TMP/times"
    printf -v "$1" '%s' "$(awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%.3f", t
    }' "$TMP/times")"
}

# ---------------------------------------------------------------- load

if [[ $LOAD == auto ]]; then
    if have wrk; then LOAD=wrk; else LOAD=testkit; fi
fi
case $LOAD in
    wrk) have wrk || { log "BENCH_LOAD=wrk but wrk is not installed"; exit 2; } ;;
    testkit) ;;
    *) log "BENCH_LOAD must be auto, wrk or testkit"; exit 2 ;;
esac

# wrk prints "870.00us", "3.51ms", "1.20s", "2.00m": to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : (u == "h") ? 3.6e9 : -1
        if (f < 0) { print ""; exit }
        printf "%d", n * f + 0.5
    }'
}

# run_load URL DURATION OUTFILE: runs the load generator pinned to CPU_LOAD.
# Sets R_RPS, R_P50, R_P99 (microseconds), R_REQUESTS, R_ERRORS, R_ERR_DETAIL.
run_load() {
    local url=$1 duration=$2 out=$3 status=0
    if [[ $LOAD == wrk ]]; then
        start_bg "$CPU_LOAD" "$out" wrk -t"$LOAD_THREADS" -c"$CONNECTIONS" -d"$duration" \
            --timeout "$REQUEST_TIMEOUT" --latency "$url"
    else
        start_bg "$CPU_LOAD" "$out" "$TESTKIT" load --url "$url" -c "$CONNECTIONS" -d "$duration" \
            --deadline "$REQUEST_TIMEOUT" --threads "$LOAD_THREADS" --json
    fi
    local pid=$LAST_PID
    wait "$pid" || status=$?
    forget_pid "$pid"
    if ((status != 0)); then
        log "load generator exited with status $status:"
        tail -n 20 "$out" >&2
        return 1
    fi
    R_RPS="" R_P50="" R_P99="" R_REQUESTS="" R_ERRORS="" R_ERR_DETAIL=""
    if [[ $LOAD == wrk ]]; then
        # Socket errors (connect/read/write/timeout) and non-2xx/3xx answers
        # both count as errors. wrk leaves timed-out requests out of its
        # latency percentiles, so a nonzero timeout count means p99 is better
        # than what clients saw: rerun with BENCH_LOAD=testkit to see them.
        R_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
        R_P50=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
        R_P99=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
        R_REQUESTS=$(awk '/requests in/ {print $1}' "$out")
        local connect=0 read=0 write=0 timeout=0 non2xx=0 line
        line=$(grep -m1 'Socket errors:' "$out" || true)
        if [[ -n $line ]]; then
            connect=$(sed -n 's/.*connect \([0-9]*\).*/\1/p' <<<"$line")
            read=$(sed -n 's/.*read \([0-9]*\).*/\1/p' <<<"$line")
            write=$(sed -n 's/.*write \([0-9]*\).*/\1/p' <<<"$line")
            timeout=$(sed -n 's/.*timeout \([0-9]*\).*/\1/p' <<<"$line")
        fi
        non2xx=$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "$out")
        non2xx=${non2xx:-0}
        R_ERRORS=$((connect + read + write + timeout + non2xx))
        R_ERR_DETAIL="connect=$connect read=$read write=$write timeout=$timeout non2xx=$non2xx"
    else
        # One compact JSON object; latency_us counts errors too (a request
        # that hit the deadline is in p99), unlike wrk.
        local json
        json=$(grep -m1 '^{' "$out")
        R_RPS=$(sed -n 's/.*"requests_per_second":\([0-9.eE+-]*\).*/\1/p' <<<"$json" | awk '{printf "%.0f", $1}')
        R_P50=$(sed -n 's/.*"latency_us":{[^}]*"p50":\([0-9]*\).*/\1/p' <<<"$json")
        R_P99=$(sed -n 's/.*"latency_us":{[^}]*"p99":\([0-9]*\).*/\1/p' <<<"$json")
        R_REQUESTS=$(sed -n 's/.*"sent":\([0-9]*\).*/\1/p' <<<"$json")
        R_ERRORS=$(sed -n 's/.*"error_count":\([0-9]*\).*/\1/p' <<<"$json")
        R_ERR_DETAIL=$(sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' <<<"$json" | tr -d '"' | tr ':' '=' | tr ',' ' ')
        R_ERR_DETAIL=${R_ERR_DETAIL:-none}
    fi
    if [[ -z $R_RPS || -z $R_P50 || -z $R_P99 || -z $R_ERRORS ]]; then
        log "could not parse the load generator's output:"
        cat "$out" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- build

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
if [[ $BUILD != 0 ]]; then
    log "building levee and levee-testkit (release)"
    (cd "$REPO" && cargo build --release --quiet -p levee -p levee-testkit) ||
        { log "cargo build failed"; exit 1; }
fi
LEVEE=$TARGET_DIR/release/levee
TESTKIT=$TARGET_DIR/release/levee-testkit
for bin in "$LEVEE" "$TESTKIT"; do
    [[ -x $bin ]] || { log "$bin not found (build with: cargo build --release -p levee -p levee-testkit)"; exit 1; }
done

# ---------------------------------------------------------------- targets

# fill TEMPLATE OUT KEY=VALUE...: replaces @KEY@ in TEMPLATE.
fill() {
    local template=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
    local left
    left=$(grep -v '^[[:space:]]*#' "$out" | grep -o '@[A-Z_]*@' | head -1 || true)
    if [[ -n $left ]]; then
        log "unfilled placeholder $left in $out"
        return 1
    fi
}

# HAProxy's global maxconn: max(4096, 10 x connections), but no more than the
# hard fd limit allows (HAProxy needs about 2 fds per connection and refuses
# to start otherwise). See templates/haproxy.cfg.tmpl for why it must be large.
haproxy_maxconn() {
    local want=$((CONNECTIONS * 10 > 4096 ? CONNECTIONS * 10 : 4096)) hard cap
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]]; then
        cap=$(((hard - 200) / 2))
        ((want > cap)) && want=$cap
    fi
    echo "$want"
}

BACKEND_PORT=""
# start_target NAME ROUND: starts the proxy NAME (nothing for "direct") in a
# fresh directory TDIR and sets TARGET_URL and TARGET_PID. Returns 2 when NAME
# is not installed (SKIP_REASON).
start_target() {
    local name=$1 port admin dir=$TMP/round$2/$1
    mkdir -p "$dir"
    TDIR=$dir TARGET_PID="" SKIP_REASON=""
    case $name in
        direct)
            TARGET_URL="http://127.0.0.1:$BACKEND_PORT/"
            return 0
            ;;
        levee | levee-h2c | levee-resilience)
            free_port port && free_port admin || return 1
            local template=levee.toml.tmpl
            # levee-resilience: health checks, outlier detection, admission,
            # cluster and endpoint breakers (the instructions.sh target).
            [[ $name == levee-resilience ]] && template=levee-resilience.toml.tmpl
            fill "$TEMPLATES/$template" "$dir/levee.toml" \
                ADMIN_PORT="$admin" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL="$POOL" || return 1
            # levee-h2c: the same, speaking cleartext HTTP/2 to the backend
            # (the [[cluster]] table is the template's last).
            [[ $name == levee-h2c ]] && echo 'upstream_protocol = "h2c"' >>"$dir/levee.toml"
            start_bg "$CPU_PROXY" "$dir/levee.log" \
                env LEVEE_LOG="${LEVEE_LOG:-warn}" "$LEVEE" run -c "$dir/levee.toml" --worker-threads "$LEVEE_THREADS"
            TARGET_PID=$LAST_PID
            wait_ready "$TARGET_PID" "http://127.0.0.1:$admin/ready" || return 1
            ;;
        haproxy)
            have haproxy || { SKIP_REASON="haproxy not installed"; return 2; }
            free_port port || return 1
            fill "$TEMPLATES/haproxy.cfg.tmpl" "$dir/haproxy.cfg" \
                LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" MAXCONN="$(haproxy_maxconn)" \
                THREADS="$PROXY_THREADS" || return 1
            start_bg "$CPU_PROXY" "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"
            TARGET_PID=$LAST_PID
            ;;
        nginx)
            have nginx || { SKIP_REASON="nginx not installed"; return 2; }
            free_port port || return 1
            local user_line=""
            # As root, nginx would switch its worker to "nobody", which cannot
            # use the temp dir; stay the current user.
            ((EUID == 0)) && user_line="user root;"
            fill "$TEMPLATES/nginx.conf.tmpl" "$dir/nginx.conf" \
                TMP="$dir" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL="$POOL" USER_LINE="$user_line" \
                THREADS="$PROXY_THREADS" || return 1
            start_bg "$CPU_PROXY" "$dir/nginx.log" \
                nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
            TARGET_PID=$LAST_PID
            ;;
        *)
            log "unknown target '$name' (want direct, levee, levee-h2c, levee-resilience, haproxy or nginx)"
            return 1
            ;;
    esac
    TARGET_URL="http://127.0.0.1:$port/"
    wait_ready "$TARGET_PID" "$TARGET_URL"
}

version_of() {
    case $1 in
        direct | levee | levee-h2c | levee-resilience) echo "" ;;
        haproxy) haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' ;;
        nginx) nginx -v 2>&1 | sed -n 's|.*nginx/||p' ;;
        wrk) wrk -v 2>&1 | awk 'NR == 1 {print $2}' ;;
    esac
}

# ---------------------------------------------------------------- run

TIMESTAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT_DIR"
JSON_OUT=$OUT_DIR/throughput-$TIMESTAMP.json
RAW_OUT=$OUT_DIR/throughput-$TIMESTAMP.log
: >"$RAW_OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "")

log "backend: $BACKEND; load: $LOAD, $CONNECTIONS connections, warm-up $WARMUP, measure $DURATION, $ROUNDS round(s); proxy threads: $PROXY_THREADS (levee $LEVEE_THREADS)"
if ((PINNING)); then
    log "pinning: backend -> CPU $CPU_BACKEND, load generator -> CPU $CPU_LOAD, proxy -> CPU $CPU_PROXY"
fi
if [[ -n $LOADAVG_BEFORE ]] && awk -v l="${LOADAVG_BEFORE%% *}" 'BEGIN {exit !(l > 0.5)}'; then
    log "warning: load average is $LOADAVG_BEFORE before the run; other work on this machine will add noise"
fi

free_port BACKEND_PORT
if [[ $BACKEND == nginx ]]; then
    mkdir -p "$TMP/backend"
    fill "$TEMPLATES/nginx-backend.conf.tmpl" "$TMP/backend/nginx.conf" \
        TMP="$TMP/backend" LISTEN_PORT="$BACKEND_PORT" USER_LINE="$( ((EUID == 0)) && echo "user root;")"
    start_bg "$CPU_BACKEND" "$TMP/backend.log" \
        nginx -p "$TMP/backend/" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" -g 'daemon off;'
else
    start_bg "$CPU_BACKEND" "$TMP/backend.log" "$TESTKIT" backend --listen "127.0.0.1:$BACKEND_PORT" --name origin --threads 1
fi
BACKEND_PID=$LAST_PID
wait_ready "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/" ||
    { log "the backend did not start:"; cat "$TMP/backend.log" >&2; exit 1; }

# Per target: the final STATUS/REASON, and the per-round results as
# space-separated lists (L_*), reduced to medians once all rounds are done.
declare -A STATUS REASON L_RPS L_P50 L_P99 L_ERRORS L_REQUESTS L_CPU L_KERNEL L_OTHER L_DETAIL
ORDER=()
for target in $TARGETS; do ORDER+=("$target"); done

# measure TARGET ROUND: one fresh start, warm-up and measurement of TARGET.
measure() {
    local target=$1 round=$2 rc=0
    start_target "$target" "$round" || rc=$?
    if ((rc == 2)); then
        STATUS[$target]=skipped REASON[$target]=$SKIP_REASON
        log "skipped: $SKIP_REASON"
        return 0
    elif ((rc != 0)); then
        REASON[$target]="did not start or did not answer 200"
        log "$target did not start or did not answer 200; its output:"
        tail -n 20 "$TDIR"/*.log >&2 2>/dev/null || true
        [[ -n $TARGET_PID ]] && stop_pid "$TARGET_PID"
        return 0
    fi
    # cpu: CPU used by the process under test while it is measured (the
    # proxy, or the backend for "direct"), 100 = one core. It shows how close
    # to its own core's limit a target ran, and gives a req/s per CPU that
    # stays comparable when the load generator's core, not the proxy, caps
    # req/s.
    # other: CPU that neither the backend, the target nor the load generator
    # used during the measurement (other work on a shared machine). Much of it
    # means the numbers are noisy.
    # kernel: the part of that CPU spent in the kernel (system time).
    local cpu_pid=${TARGET_PID:-$BACKEND_PID} ticks0 ticks1 sys0 sys1 bticks0 bticks1 mticks0 mticks1 kids0 kids1 t0 t1
    local cpu="" kernel="" other="" ours ok=0
    if run_load "$TARGET_URL" "$WARMUP" "$TDIR/warmup.out" &&
        ticks0=$(cpu_ticks "$cpu_pid") && sys0=$(cpu_ticks "$cpu_pid" sys) && bticks0=$(cpu_ticks "$BACKEND_PID") &&
        mticks0=$(machine_busy_ticks) && children_cpu_seconds kids0 && t0=$(date +%s.%N) &&
        run_load "$TARGET_URL" "$DURATION" "$TDIR/load.out"; then
        ok=1
        t1=$(date +%s.%N)
        children_cpu_seconds kids1
        mticks1=$(machine_busy_ticks) ticks1=$(cpu_ticks "$cpu_pid") bticks1=$(cpu_ticks "$BACKEND_PID")
        sys1=$(cpu_ticks "$cpu_pid" sys)
        if [[ -n $ticks0 && -n $ticks1 ]]; then
            cpu=$(awk -v d=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" \
                'BEGIN { printf "%.0f", 100 * d / hz / (b - a) }')
            if [[ -n $sys0 && -n $sys1 ]] && ((ticks1 > ticks0)); then
                kernel=$(awk -v s=$((sys1 - sys0)) -v d=$((ticks1 - ticks0)) 'BEGIN { printf "%.0f", 100 * s / d }')
            fi
        fi
        if [[ -n $cpu && -n $bticks0 && -n $bticks1 && -n $mticks0 && -n $mticks1 ]]; then
            ours=$((bticks1 - bticks0))
            [[ $target != direct ]] && ours=$((ours + ticks1 - ticks0))
            other=$(awk -v m=$((mticks1 - mticks0)) -v o="$ours" -v k0="$kids0" -v k1="$kids1" \
                -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" \
                'BEGIN { x = 100 * ((m - o) / hz - (k1 - k0)) / (b - a); printf "%.0f", (x < 0 ? 0 : x) }')
        fi
        { echo "== round $round: $target ($TARGET_URL)"; cat "$TDIR/load.out"; echo; } >>"$RAW_OUT"
        log "$target: $R_RPS req/s, p50 ${R_P50}us, p99 ${R_P99}us, errors $R_ERRORS ($R_ERR_DETAIL), cpu ${cpu:-?}% (kernel ${kernel:-?}% of it), other processes ${other:-?}%"
    else
        REASON[$target]="load generator failed"
    fi
    if [[ -n $TARGET_PID ]]; then
        if ! kill -0 "$TARGET_PID" 2>/dev/null; then
            log "warning: $target exited during the run"
            REASON[$target]="exited during the run"
            ok=0
        fi
        stop_pid "$TARGET_PID"
        # Anything the proxy wrote (levee at warn level, nginx errors) goes in the raw log.
        local f
        for f in "$TDIR"/*.log; do
            [[ -s $f ]] && { echo "== round $round: $target: $(basename "$f")"; tail -n 50 "$f"; echo; } >>"$RAW_OUT"
        done
    fi
    if ((ok)); then
        L_RPS[$target]+="$R_RPS " L_P50[$target]+="$R_P50 " L_P99[$target]+="$R_P99 "
        L_ERRORS[$target]+="$R_ERRORS " L_REQUESTS[$target]+="${R_REQUESTS:-0} "
        L_CPU[$target]+="${cpu:--} " L_KERNEL[$target]+="${kernel:--} " L_OTHER[$target]+="${other:--} "
        L_DETAIL[$target]+="${R_ERR_DETAIL// /,};"
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS > 1)) && log "=== round $round of $ROUNDS"
    for target in "${ORDER[@]}"; do
        [[ ${STATUS[$target]:-} == skipped ]] && continue
        log "== $target"
        measure "$target" "$round"
    done
done
stop_pid "$BACKEND_PID"
LOADAVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "")

# ---------------------------------------------------------------- report

# median LIST: median of the numbers in LIST ("-" entries ignored), or "".
median() {
    printf '%s\n' $1 | grep -v '^-$' | sort -n | awk '{ a[NR] = $1 }
        END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
declare -A RPS P50 P99 ERRORS REQUESTS CPU KERNEL OTHER ERR_DETAIL
for t in "${ORDER[@]}"; do
    [[ ${STATUS[$t]:-} == skipped ]] && continue
    if [[ -z ${L_RPS[$t]:-} ]]; then
        STATUS[$t]=failed
        continue
    fi
    STATUS[$t]=ok
    RPS[$t]=$(median "${L_RPS[$t]}") P50[$t]=$(median "${L_P50[$t]}") P99[$t]=$(median "${L_P99[$t]}")
    CPU[$t]=$(median "${L_CPU[$t]}")
    KERNEL[$t]=$(median "${L_KERNEL[$t]}")
    OTHER[$t]=$(printf '%s\n' ${L_OTHER[$t]} | grep -v '^-$' | sort -n | tail -n 1)
    ERRORS[$t]=$(printf '%s\n' ${L_ERRORS[$t]} | awk '{ s += $1 } END { print s + 0 }')
    REQUESTS[$t]=$(printf '%s\n' ${L_REQUESTS[$t]} | awk '{ s += $1 } END { print s + 0 }')
    ERR_DETAIL[$t]=${L_DETAIL[$t]%;}
    ERR_DETAIL[$t]=${ERR_DETAIL[$t]//,/ }
    ERR_DETAIL[$t]=${ERR_DETAIL[$t]//;/; }
    if [[ ${REASON[$t]:-} ]]; then
        log "warning: $t failed in some rounds (${REASON[$t]}); its figures are from the rounds that completed"
    fi
done

fmt_ms() { awk -v us="$1" 'BEGIN { if (us < 10000) printf "%.2fms", us / 1000; else printf "%.1fms", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "" }'; }

echo
# cpu: CPU use of the proxy (of the backend for "direct") during the
# measurement, 100 = one full core. kernel: the part of it spent in the
# kernel. req/cpu-s: req/s per core of it.
per_cpu() { awk -v r="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", r * 100 / c; else print "" }'; }
printf '%-10s %9s %9s %9s %8s %6s %7s %10s\n' target req/s p50 p99 errors cpu kernel req/cpu-s
for t in "${ORDER[@]}"; do
    if [[ ${STATUS[$t]} == ok ]]; then
        printf '%-10s %9s %9s %9s %8s %6s %7s %10s\n' "$t" "${RPS[$t]}" "$(fmt_ms "${P50[$t]}")" "$(fmt_ms "${P99[$t]}")" "${ERRORS[$t]}" \
            "${CPU[$t]:+${CPU[$t]}%}" "${KERNEL[$t]:+${KERNEL[$t]}%}" "$(per_cpu "${RPS[$t]}" "${CPU[$t]}")"
    else
        printf '%-10s %s (%s)\n' "$t" "${STATUS[$t]}" "${REASON[$t]}"
    fi
done

RATIO_LINES=()
RATIO_JSON=()
if [[ ${STATUS[levee]:-} == ok ]]; then
    for other in direct haproxy nginx; do
        [[ ${STATUS[$other]:-} == ok ]] || continue
        r=$(ratio "${RPS[levee]}" "${RPS[$other]}")
        p=$(ratio "${P99[levee]}" "${P99[$other]}")
        e=$(ratio "$(per_cpu "${RPS[levee]}" "${CPU[levee]}")" "$(per_cpu "${RPS[$other]}" "${CPU[$other]}")")
        if [[ $other == direct ]]; then
            RATIO_LINES+=("$(printf '%-14s %s' "levee/$other" "$r")")
            RATIO_JSON+=("\"levee/$other\": {\"rps\": ${r:-null}, \"p99\": ${p:-null}}")
        else
            RATIO_LINES+=("$(printf '%-14s %s  (p99 ratio %s, req/cpu-s ratio %s)' "levee/$other" "$r" "$p" "${e:-?}")")
            RATIO_JSON+=("\"levee/$other\": {\"rps\": ${r:-null}, \"p99\": ${p:-null}, \"rps_per_cpu\": ${e:-null}}")
        fi
    done
fi
if ((${#RATIO_LINES[@]})); then
    echo
    printf '%s\n' "${RATIO_LINES[@]}"
fi
# A proxied target close to "direct", or one that did not use its whole core,
# was held back by the shared load-generator/backend core, not by itself.
for t in "${ORDER[@]}"; do
    if [[ $t != direct && ${STATUS[$t]:-} == ok && ${STATUS[direct]:-} == ok ]] &&
        awk -v a="${RPS[$t]}" -v b="${RPS[direct]}" 'BEGIN {exit !(a > 0.9 * b)}'; then
        echo "note: $t is within 10% of direct: the load generator/backend, not $t, may be the limit"
    elif [[ $t != direct && ${STATUS[$t]:-} == ok && -n ${CPU[$t]:-} ]] && ((CPU[$t] < 85)); then
        echo "note: $t used only ${CPU[$t]}% of a core: the load generator/backend, not $t, was the limit"
    fi
    if [[ ${STATUS[$t]:-} == ok && -n ${OTHER[$t]:-} ]] && ((OTHER[$t] > 15)); then
        echo "note: other processes used ${OTHER[$t]}% of a core while $t was measured: its numbers are noisy"
    fi
    if [[ ${STATUS[$t]:-} == ok && $LOAD == wrk ]] && [[ ${ERR_DETAIL[$t]} != *"timeout=0"* ]]; then
        echo "note: wrk saw timeouts for $t; wrk leaves them out of p50/p99 (BENCH_LOAD=testkit counts them)"
    fi
done

# JSON (written by hand: no jq/python needed).
# rounds_json TARGET: the per-round figures of TARGET as a JSON array.
rounds_json() {
    local t=$1
    paste -d' ' <(printf '%s\n' ${L_RPS[$t]}) <(printf '%s\n' ${L_P50[$t]}) <(printf '%s\n' ${L_P99[$t]}) \
        <(printf '%s\n' ${L_ERRORS[$t]}) <(printf '%s\n' ${L_CPU[$t]}) <(printf '%s\n' ${L_OTHER[$t]}) \
        <(printf '%s\n' ${L_KERNEL[$t]}) |
        awk 'function n(v) { return v == "-" ? "null" : v }
            { printf "%s{\"requests_per_second\": %s, \"p50_us\": %s, \"p99_us\": %s, \"errors\": %s, \"cpu_percent\": %s, \"other_cpu_percent\": %s, \"kernel_percent\": %s}",
                (NR > 1 ? ", " : "["), $1, $2, $3, $4, n($5), n($6), n($7) }
            END { print (NR ? "]" : "[]") }'
}
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "")
GIT_DIRTY=false
[[ -n $(git -C "$REPO" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null) ]] && GIT_DIRTY=true
{
    echo "{"
    echo "  \"timestamp\": $(json_str "$TIMESTAMP"),"
    echo "  \"git\": {\"rev\": $(json_str "$GIT_REV"), \"dirty\": $GIT_DIRTY},"
    echo "  \"host\": {\"nproc\": $(nproc 2>/dev/null || echo 0), \"loadavg_before\": $(json_str "$LOADAVG_BEFORE"), \"loadavg_after\": $(json_str "$LOADAVG_AFTER")},"
    echo "  \"settings\": {"
    echo "    \"backend\": $(json_str "$BACKEND"),"
    echo "    \"load_generator\": $(json_str "$LOAD"), \"load_generator_version\": $(json_str "$([[ $LOAD == wrk ]] && version_of wrk)"),"
    echo "    \"load_threads\": $LOAD_THREADS, \"connections\": $CONNECTIONS, \"rounds\": $ROUNDS,"
    echo "    \"duration_s\": $(duration_seconds "$DURATION"), \"warmup_s\": $(duration_seconds "$WARMUP"),"
    echo "    \"request_timeout\": $(json_str "$REQUEST_TIMEOUT"), \"upstream_pool\": $POOL, \"levee_worker_threads\": $LEVEE_THREADS, \"proxy_threads\": $PROXY_THREADS,"
    echo "    \"pinning\": {\"enabled\": $( ((PINNING)) && echo true || echo false), \"backend\": $(json_str "$CPU_BACKEND"), \"load\": $(json_str "$CPU_LOAD"), \"proxy\": $(json_str "$CPU_PROXY")}"
    echo "  },"
    echo "  \"results\": ["
    n=0
    for t in "${ORDER[@]}"; do
        ((n++)) && echo ","
        if [[ ${STATUS[$t]} == ok ]]; then
            printf '    {"target": %s, "status": "ok", "version": %s, "requests_per_second": %s, "p50_us": %s, "p99_us": %s, "requests": %s, "errors": %s, "error_detail": %s, "cpu_percent": %s, "kernel_percent": %s, "cpu_of": %s, "other_cpu_percent": %s, "rounds": %s}' \
                "$(json_str "$t")" "$(json_str "$(version_of "$t")")" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
                "${REQUESTS[$t]:-null}" "${ERRORS[$t]}" "$(json_str "${ERR_DETAIL[$t]}")" "${CPU[$t]:-null}" "${KERNEL[$t]:-null}" \
                "$(json_str "$([[ $t == direct ]] && echo backend || echo proxy)")" "${OTHER[$t]:-null}" "$(rounds_json "$t")"
        else
            printf '    {"target": %s, "status": %s, "reason": %s}' \
                "$(json_str "$t")" "$(json_str "${STATUS[$t]}")" "$(json_str "${REASON[$t]}")"
        fi
    done
    echo
    echo "  ],"
    echo "  \"ratios\": {$(IFS=,; echo "${RATIO_JSON[*]+"${RATIO_JSON[*]}"}")}"
    echo "}"
} >"$JSON_OUT"
echo
echo "results: $JSON_OUT (raw load-generator output: $RAW_OUT)"
