#!/usr/bin/env bash
# bench/instructions.sh: CPU instructions per proxied request of levee, HAProxy
# and nginx, counted by valgrind's callgrind. Unlike requests/s this figure
# does not move with other load on the machine, so two builds (or two
# proxies) can be compared exactly.
#
# Each target runs under callgrind in front of a testkit backend; the testkit
# load generator sends N1 and then, against a fresh start, N2 GET requests
# over 4 keep-alive connections. Startup and shutdown cost the same in both
# runs, so (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request.
#
# Targets (BENCH_TARGETS, in this order by default):
#   levee             levee run --worker-threads 1, templates/levee.toml.tmpl ("bare")
#   levee-resilience  the same with health checks, admission control, cluster
#                     and per-endpoint breakers (templates/levee-resilience.toml.tmpl)
#   levee-2threads    "bare" with --worker-threads 2
#   levee-access-log  "bare" with a JSON access log to a file
#                     (templates/levee-access-log.toml.tmpl; not in the
#                     default list)
#   haproxy           nbthread 1, stopped with SIGUSR1 (templates/haproxy.cfg.tmpl)
#   nginx             master_process off, 1 worker, stopped with SIGQUIT
#                     (templates/nginx.conf.tmpl)
# A peer that is not installed is skipped. Each run is checked: the load
# generator got N answers of 200 and no error, the backend received at least
# N requests, the proxy exited by itself with status 0 and callgrind wrote its
# totals. Any failed check fails the target and the script (exit 1).
#
# Usage: bench/instructions.sh [LEVEE_BINARY]   (default: target/release/levee)
#        BENCH_TARGETS=levee bench/instructions.sh   (quick: levee bare only)
# Env:   BENCH_N1=2000 BENCH_N2=12000 BENCH_CONNECTIONS=4
#        BENCH_TARGETS="levee levee-resilience levee-2threads haproxy nginx"
#        BENCH_BUILD=1 BENCH_OUT=bench/out BENCH_KEEP_TMP=0 LEVEE_LOG=warn
#
# Only 127.0.0.1 is ever contacted; all ports are picked free at run time.
set -euo pipefail

SCRIPT=instructions.sh
KEEP_TMP=${BENCH_KEEP_TMP:-0}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- settings

N1=${BENCH_N1:-2000}
N2=${BENCH_N2:-12000}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
TARGETS=${BENCH_TARGETS:-levee levee-resilience levee-2threads haproxy nginx}
# 1: also count system calls per request (strace -c, same two runs), which
# callgrind does not see: the kernel's share of the work.
SYSCALLS=${BENCH_SYSCALLS:-0}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
# Upstream keep-alive pool of levee (its default) and nginx: far above the
# connections used, so no proxy has to open upstream connections per request.
POOL=128
# HAProxy derives the fd limit it needs from maxconn (about 2 per connection)
# and refuses to start if it cannot raise its limit that far; under valgrind
# the limit is a little below the hard limit (valgrind keeps some fds). 256 is
# far above the 4 connections and still keeps the idle upstream connections
# pooled (see templates/haproxy.cfg.tmpl).
HAPROXY_MAXCONN=256
# A request slower than this counts as an error. Under callgrind a proxy is
# 50-100x slower than native, and the first requests are slower still while
# valgrind translates code.
DEADLINE=10s
# How long a proxy may take to start (and to stop and write its callgrind
# output) under valgrind.
START_LIMIT=120
STOP_LIMIT=120
# Issue #11: levee-resilience should cost at most this much more than bare.
RESILIENCE_TARGET=1.15

[[ $N1 =~ ^[1-9][0-9]*$ && $N2 =~ ^[1-9][0-9]*$ ]] || die "BENCH_N1 and BENCH_N2 must be positive integers"
((N2 > N1)) || die "BENCH_N2 ($N2) must be larger than BENCH_N1 ($N1)"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS must be a positive integer"
((N1 >= CONNECTIONS)) || die "BENCH_N1 must be at least BENCH_CONNECTIONS"
have valgrind || die "valgrind is not installed (apt-get install valgrind)"
have curl || die "curl is needed to wait for the proxies"
[[ $SYSCALLS == 0 ]] || have strace || die "BENCH_SYSCALLS=1 needs strace"
[[ $SYSCALLS == 0 || $SYSCALLS == 1 ]] || die "BENCH_SYSCALLS must be 0 or 1"

ORDER=()
for t in $TARGETS; do
    case $t in
        levee | levee-resilience | levee-2threads | levee-access-log | haproxy | nginx) ORDER+=("$t") ;;
        *) die "unknown target '$t' (want levee, levee-resilience, levee-2threads, levee-access-log, haproxy or nginx)" ;;
    esac
done
((${#ORDER[@]})) || die "BENCH_TARGETS is empty"

build_binaries "${1:-}"

# ---------------------------------------------------------------- backend

# One backend for the whole run, with a control port whose GET /stats counts
# the requests and connections it received: every run checks that the proxy
# forwarded each request (and shows how many upstream connections it used).
free_port BACKEND_PORT
free_port CONTROL_PORT
start_bg "$TMP/backend.log" "$TESTKIT" backend --listen "127.0.0.1:$BACKEND_PORT" --name origin \
    --threads 1 --control "127.0.0.1:$CONTROL_PORT"
BACKEND_PID=$LAST_PID
wait_ready "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/" ||
    { log "the backend did not start:"; cat "$TMP/backend.log" >&2; exit 1; }

# backend_stats: "requests connections" the backend has received so far.
backend_stats() {
    local json
    json=$(curl -s --max-time 2 --noproxy '*' "http://127.0.0.1:$CONTROL_PORT/stats")
    echo "$(sed -n 's/.*"requests": *\([0-9]*\).*/\1/p' <<<"$json") $(sed -n 's/.*"connections": *\([0-9]*\).*/\1/p' <<<"$json")"
}
read -r _req _conn <<<"$(backend_stats)"
[[ ${_req:-} =~ ^[0-9]+$ && ${_conn:-} =~ ^[0-9]+$ ]] || die "cannot read the backend's /stats"

# ---------------------------------------------------------------- one run

version_of() {
    case $1 in
        levee*) "$LEVEE" --version 2>/dev/null | head -1 ;;
        haproxy) haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' ;;
        nginx) nginx -v 2>&1 | sed -n 's|.*nginx/||p' ;;
    esac
}

# start_proxy TARGET DIR TOOL: starts TARGET under TOOL (callgrind or strace)
# with its config in DIR; sets PROXY_PID (the tool's process), SIGNAL_PID
# (the proxy's), PROXY_URL and STOP_SIGNAL. Returns 2 if not installed.
start_proxy() {
    local target=$1 dir=$2 tool=$3 port admin ready wrap
    if [[ $tool == strace ]]; then
        # -f: every thread; -c: a count per syscall, written when the proxy exits.
        wrap=(strace -f -c -o "$dir/strace.out")
    else
        wrap=(valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out")
    fi
    PROXY_PID="" SIGNAL_PID=""
    free_port port || return 1
    PROXY_URL="http://127.0.0.1:$port/"
    ready=$PROXY_URL
    case $target in
        levee | levee-resilience | levee-2threads | levee-access-log)
            local template=levee.toml.tmpl threads=1
            [[ $target == levee-resilience ]] && template=levee-resilience.toml.tmpl
            [[ $target == levee-access-log ]] && template=levee-access-log.toml.tmpl
            [[ $target == levee-2threads ]] && threads=2
            free_port admin || return 1
            fill "$TEMPLATES/$template" "$dir/levee.toml" \
                ADMIN_PORT="$admin" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL="$POOL" DIR="$dir" || return 1
            # levee drains on SIGTERM (drain_timeout 1s) and exits 0.
            STOP_SIGNAL=TERM
            start_bg "$dir/proxy.log" env LEVEE_LOG="${LEVEE_LOG:-warn}" \
                "${wrap[@]}" "$LEVEE" run -c "$dir/levee.toml" --worker-threads "$threads"
            ready="http://127.0.0.1:$admin/ready"
            ;;
        haproxy)
            have haproxy || return 2
            fill "$TEMPLATES/haproxy.cfg.tmpl" "$dir/haproxy.cfg" \
                LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" MAXCONN="$HAPROXY_MAXCONN" THREADS=1 || return 1
            # -db: foreground, one process. SIGUSR1 is HAProxy's soft stop:
            # it closes its listeners, ends idle connections and returns
            # from main(), so callgrind writes its totals at exit.
            STOP_SIGNAL=USR1
            start_bg "$dir/proxy.log" "${wrap[@]}" haproxy -db -f "$dir/haproxy.cfg"
            ;;
        nginx)
            have nginx || return 2
            local user_line=""
            ((EUID == 0)) && user_line="user root;"
            fill "$TEMPLATES/nginx.conf.tmpl" "$dir/nginx.conf" \
                TMP="$dir" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL="$POOL" \
                USER_LINE="$user_line" THREADS=1 || return 1
            # master_process off: the one process serves (no master/worker
            # fork for callgrind to follow). SIGQUIT is its graceful stop.
            STOP_SIGNAL=QUIT
            start_bg "$dir/proxy.log" "${wrap[@]}" \
                nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off; master_process off;'
            ;;
    esac
    PROXY_PID=$LAST_PID SIGNAL_PID=$LAST_PID
    wait_ready "$PROXY_PID" "$ready" "$START_LIMIT" || return 1
    # valgrind runs the proxy in its own process; strace runs it as a child
    # and exits with its status once it has exited.
    if [[ $tool == strace ]]; then
        SIGNAL_PID=$(ps -o pid= --ppid "$PROXY_PID" | head -n 1 | tr -d ' ')
        [[ -n $SIGNAL_PID ]] || return 1
    fi
}

# stop_proxy: sends STOP_SIGNAL and waits for the proxy to exit by itself
# (a SIGKILL would lose callgrind's output). Sets PROXY_STATUS.
stop_proxy() {
    local i
    kill -"$STOP_SIGNAL" "${SIGNAL_PID:-$PROXY_PID}" 2>/dev/null || true
    for ((i = 0; i < STOP_LIMIT * 10; i++)); do
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PROXY_PID" 2>/dev/null; then
        log "pid $PROXY_PID did not exit within ${STOP_LIMIT}s of SIG$STOP_SIGNAL; killing it"
        kill -KILL "$PROXY_PID" 2>/dev/null || true
    fi
    PROXY_STATUS=0
    wait "$PROXY_PID" 2>/dev/null || PROXY_STATUS=$?
    forget_pid "$PROXY_PID"
}

# json_field NAME FILE: a number from the load generator's one-line JSON.
json_field() { grep -m1 '^{' "$2" | sed -n "s/.*\"$1\":\\([0-9.]*\\).*/\\1/p"; }

# measure_run TARGET N DIR TOOL: one fresh start of TARGET under TOOL
# (callgrind or strace), N requests, stop. Sets R_COUNT (instructions, or
# system calls), R_SECONDS (load wall time), R_UP_REQUESTS and
# R_UP_CONNECTIONS (what the backend received during the load). On failure
# returns 1 with FAIL_REASON set, or 2 if not installed.
measure_run() {
    local target=$1 n=$2 dir=$3 tool=$4 rc=0 attempt
    mkdir -p "$dir"
    R_COUNT="" R_SECONDS="" R_UP_REQUESTS="" R_UP_CONNECTIONS="" FAIL_REASON=""
    # Another benchmark may take a port between the probe and the bind:
    # then start again on new ports.
    for attempt in 1 2 3; do
        rc=0
        start_proxy "$target" "$dir" "$tool" || rc=$?
        ((rc == 2)) && return 2
        ((rc == 0)) && break
        [[ -n $PROXY_PID ]] && { STOP_SIGNAL=KILL SIGNAL_PID=$PROXY_PID; stop_proxy; }
        if grep -qiE 'address (already )?in use|cannot bind' "$dir/proxy.log" 2>/dev/null && ((attempt < 3)); then
            log "$target: port taken, starting again on other ports"
            continue
        fi
        FAIL_REASON="did not start or did not answer 200 within ${START_LIMIT}s"
        log "$target: $FAIL_REASON; its output:"
        grep -v '^==[0-9]*==' "$dir/proxy.log" | tail -n 20 >&2 || true
        return 1
    done

    local req0 conn0 req1 conn1 t0 t1 load_rc=0
    read -r req0 conn0 <<<"$(backend_stats)"
    t0=$(date +%s.%N)
    "$TESTKIT" load --url "$PROXY_URL" -c "$CONNECTIONS" --max-requests "$n" \
        --deadline "$DEADLINE" --threads 1 --json >"$dir/load.out" 2>&1 || load_rc=$?
    t1=$(date +%s.%N)
    read -r req1 conn1 <<<"$(backend_stats)"
    stop_proxy
    {
        echo "== $target, $n requests, $tool"
        cat "$dir/load.out"
        grep -v '^==[0-9]*==' "$dir/proxy.log" | tail -n 20 || true
        [[ -s $dir/error.log ]] && tail -n 20 "$dir/error.log"
        echo
    } >>"$RAW_OUT"

    R_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    R_UP_REQUESTS=$((req1 - req0)) R_UP_CONNECTIONS=$((conn1 - conn0))
    local sent successes errors
    sent=$(json_field sent "$dir/load.out")
    successes=$(json_field successes "$dir/load.out")
    errors=$(json_field error_count "$dir/load.out")
    if ((load_rc != 0)) || [[ -z $sent ]]; then
        FAIL_REASON="load generator failed (status $load_rc)"
    elif ((sent != n || successes != n || errors != 0)); then
        FAIL_REASON="load generator: sent $sent, successes $successes, errors $errors of $n: $(grep -m1 '^{' "$dir/load.out" | sed -n 's/.*"errors":\({[^}]*}\).*"statuses":\({[^}]*}\).*/errors \1 statuses \2/p')"
    elif ((R_UP_REQUESTS < n)); then
        FAIL_REASON="the backend received only $R_UP_REQUESTS of $n requests"
    elif ((PROXY_STATUS != 0)); then
        FAIL_REASON="exited with status $PROXY_STATUS after SIG$STOP_SIGNAL"
    fi
    if [[ -z $FAIL_REASON && $tool == strace ]]; then
        # The last line of strace -c: "100.00 SECONDS USECS/CALL CALLS [ERRORS] total".
        R_COUNT=$(awk '$NF == "total" { print $4 }' "$dir/strace.out" 2>/dev/null || true)
        [[ $R_COUNT =~ ^[0-9]+$ ]] || FAIL_REASON="no strace summary in $dir/strace.out"
    elif [[ -z $FAIL_REASON ]]; then
        R_COUNT=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out" 2>/dev/null || true)
        [[ $R_COUNT =~ ^[0-9]+$ ]] || FAIL_REASON="no callgrind totals in $dir/callgrind.out"
    fi
    if [[ -n $FAIL_REASON ]]; then
        log "$target: $FAIL_REASON"
        grep -v '^==[0-9]*==' "$dir/proxy.log" | tail -n 10 >&2 || true
        return 1
    fi
    log "$target: $n requests in ${R_SECONDS}s, $R_COUNT $([[ $tool == strace ]] && echo syscalls || echo instructions); backend got $R_UP_REQUESTS requests on $R_UP_CONNECTIONS new connections"
}

# ---------------------------------------------------------------- run

TIMESTAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT_DIR"
JSON_OUT=$OUT_DIR/instructions-$TIMESTAMP.json
RAW_OUT=$OUT_DIR/instructions-$TIMESTAMP.log
: >"$RAW_OUT"
TOOLS=(callgrind)
((SYSCALLS)) && TOOLS+=(strace)
log "${TOOLS[*]}, $CONNECTIONS keep-alive connections, $N1 and $N2 requests per target; targets: ${ORDER[*]}"

declare -A STATUS REASON PER_REQUEST RUNS_JSON FIXED SYSCALLS_PER_REQUEST
for target in "${ORDER[@]}"; do
    log "== $target"
    ok=1
    RUNS_JSON[$target]=""
    for tool in "${TOOLS[@]}"; do
        counts=()
        for n in "$N1" "$N2"; do
            rc=0
            measure_run "$target" "$n" "$TMP/$target-$tool-$n" "$tool" || rc=$?
            if ((rc == 2)); then
                STATUS[$target]=skipped REASON[$target]="$target not installed"
                log "skipped: ${REASON[$target]}"
                ok=0
                break 2
            elif ((rc != 0)); then
                STATUS[$target]=failed REASON[$target]="$tool, $n requests: $FAIL_REASON"
                ok=0
                break 2
            fi
            counts+=("$R_COUNT")
            RUNS_JSON[$target]+="${RUNS_JSON[$target]:+, }{\"tool\": \"$tool\", \"requests\": $n, \"$([[ $tool == strace ]] && echo syscalls || echo instructions)\": $R_COUNT, \"seconds\": $R_SECONDS, \"upstream_requests\": $R_UP_REQUESTS, \"upstream_connections\": $R_UP_CONNECTIONS}"
            # The resilience config's health checks reach the backend too
            # (one a second); more than that means requests were sent twice.
            if ((R_UP_REQUESTS > n + n / 100 + 100)); then
                log "note: $target sent $R_UP_REQUESTS upstream requests for $n client requests"
            fi
        done
        if [[ $tool == strace ]]; then
            SYSCALLS_PER_REQUEST[$target]=$(awk -v a="${counts[0]}" -v b="${counts[1]}" -v n=$((N2 - N1)) \
                'BEGIN { printf "%.2f", (b - a) / n }')
            log "$target: ${SYSCALLS_PER_REQUEST[$target]} system calls per request"
        else
            PER_REQUEST[$target]=$(((counts[1] - counts[0]) / (N2 - N1)))
            # What a run costs besides its requests: startup, shutdown, timers.
            FIXED[$target]=$((counts[0] - PER_REQUEST[$target] * N1))
            log "$target: ${PER_REQUEST[$target]} instructions per request"
        fi
    done
    ((ok)) && STATUS[$target]=ok
done
stop_pid "$BACKEND_PID"

# ---------------------------------------------------------------- report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "" }'; }
ok_target() { [[ ${STATUS[$1]:-} == ok ]]; }

echo
printf '%-18s %12s %12s %10s%s\n' target instr/req vs-haproxy vs-nginx "$( ((SYSCALLS)) && printf ' %14s' syscalls/req)"
for t in "${ORDER[@]}"; do
    if ok_target "$t"; then
        rh="-" rn="-"
        ok_target haproxy && rh=$(ratio "${PER_REQUEST[$t]}" "${PER_REQUEST[haproxy]}")
        ok_target nginx && rn=$(ratio "${PER_REQUEST[$t]}" "${PER_REQUEST[nginx]}")
        printf '%-18s %12s %12s %10s%s\n' "$t" "${PER_REQUEST[$t]}" "$rh" "$rn" \
            "$( ((SYSCALLS)) && printf ' %14s' "${SYSCALLS_PER_REQUEST[$t]}")"
    else
        printf '%-18s %s (%s)\n' "$t" "${STATUS[$t]}" "${REASON[$t]}"
    fi
done

RATIO_JSON=()
RATIO_LINES=()
if ok_target levee; then
    for t in levee-resilience levee-2threads levee-access-log; do
        ok_target "$t" || continue
        r=$(ratio "${PER_REQUEST[$t]}" "${PER_REQUEST[levee]}")
        RATIO_JSON+=("\"$t/levee\": $r")
        line=$(printf '%-22s %s' "$t/levee" "$r")
        if [[ $t == levee-resilience ]]; then
            verdict=met
            awk -v r="$r" -v m="$RESILIENCE_TARGET" 'BEGIN { exit !(r > m) }' && verdict=MISSED
            line+="  (target <= $RESILIENCE_TARGET: $verdict)"
        fi
        RATIO_LINES+=("$line")
    done
fi
if ((${#RATIO_LINES[@]})); then
    echo
    printf '%s\n' "${RATIO_LINES[@]}"
fi

rows=() n=0
for t in "${ORDER[@]}"; do
    if ok_target "$t"; then
        rh=null rn=null
        ok_target haproxy && rh=$(ratio "${PER_REQUEST[$t]}" "${PER_REQUEST[haproxy]}")
        ok_target nginx && rn=$(ratio "${PER_REQUEST[$t]}" "${PER_REQUEST[nginx]}")
        rows+=("$(printf '    {"target": %s, "status": "ok", "version": %s, "instructions_per_request": %s, "fixed_instructions": %s, "ratio_haproxy": %s, "ratio_nginx": %s, "syscalls_per_request": %s, "runs": [%s]}' \
            "$(json_str "$t")" "$(json_str "$(version_of "$t")")" "${PER_REQUEST[$t]}" "${FIXED[$t]}" "$rh" "$rn" \
            "${SYSCALLS_PER_REQUEST[$t]:-null}" "${RUNS_JSON[$t]}")")
    else
        rows+=("$(printf '    {"target": %s, "status": %s, "reason": %s}' \
            "$(json_str "$t")" "$(json_str "${STATUS[$t]}")" "$(json_str "${REASON[$t]}")")")
    fi
done
{
    echo "{"
    echo "  \"timestamp\": $(json_str "$TIMESTAMP"),"
    echo "  \"git\": $(git_json),"
    echo "  \"host\": {\"nproc\": $(nproc 2>/dev/null || echo 0), \"loadavg\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)")},"
    echo "  \"settings\": {\"n1\": $N1, \"n2\": $N2, \"connections\": $CONNECTIONS, \"deadline\": $(json_str "$DEADLINE"),"
    echo "    \"levee_binary\": $(json_str "$LEVEE"), \"valgrind\": $(json_str "$(valgrind --version 2>/dev/null)"),"
    echo "    \"upstream_pool\": $POOL, \"haproxy_maxconn\": $HAPROXY_MAXCONN, \"resilience_target\": $RESILIENCE_TARGET, \"syscalls\": $( ((SYSCALLS)) && echo true || echo false)},"
    echo "  \"results\": ["
    for row in "${rows[@]}"; do
        ((n++)) && echo ","
        printf '%s' "$row"
    done
    echo
    echo "  ],"
    echo "  \"ratios\": {$(IFS=,; echo "${RATIO_JSON[*]+"${RATIO_JSON[*]}"}")}"
    echo "}"
} >"$JSON_OUT"
echo
echo "results: $JSON_OUT (load generator reports and proxy output: $RAW_OUT)"

for t in "${ORDER[@]}"; do
    [[ ${STATUS[$t]} == failed ]] && { log "FAILED: $t: ${REASON[$t]}"; exit 1; }
done
exit 0
