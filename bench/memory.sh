#!/usr/bin/env bash
# bench/memory.sh: what levee's memory costs next to HAProxy and nginx.
#
# Part "idle": resident memory per idle keep-alive client connection. Each
#   proxy is started fresh in front of the same backend, warmed up, and its
#   RSS read (/proc/PID/status VmRSS); then `levee-testkit idle` opens N
#   connections that each send one GET, read the answer and stay quiet; after
#   MEM_SETTLE (levee parks idle connections after ~1 s) RSS is read again.
#   Reported: (RSS after - RSS before) / N, per proxy, and levee's ratios.
# Part "back": memory given back after load. Baseline RSS a moment after
#   start, then rounds of keep-alive load (MEM_LOAD_ROUNDS connections,
#   MEM_LOAD_DURATION each), then every client closes; RSS is sampled every
#   MEM_SAMPLE_EVERY for MEM_AFTER. Reported: peak / baseline and
#   RSS after MEM_AFTER / baseline.
#
# Usage: bench/memory.sh [LEVEE_BINARY]     (see bench/README.md for the knobs)
# Env:   MEM_PARTS="idle back" MEM_CONNECTIONS=2000 MEM_SETTLE=5s
#        MEM_TARGETS="levee haproxy nginx" MEM_BACK_TARGETS="levee haproxy"
#        MEM_LEVEE_THREADS=1 MEM_BACK_LEVEE_THREADS= (levee's default)
#        MEM_LOAD_ROUNDS="64 256 64" MEM_LOAD_DURATION=20s MEM_AFTER=60s
#        MEM_SAMPLE_EVERY=5s BENCH_LOAD=auto|wrk|testkit BENCH_BUILD=1
#        BENCH_OUT=bench/out BENCH_KEEP_TMP=0
#
# Only 127.0.0.1 is ever contacted; all ports are picked free at run time.
set -euo pipefail

SCRIPT=memory.sh
KEEP_TMP=${BENCH_KEEP_TMP:-0}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- settings

PARTS=${MEM_PARTS:-idle back}
CONNECTIONS=${MEM_CONNECTIONS:-2000}
SETTLE=$(duration_seconds "${MEM_SETTLE:-5s}")
TARGETS=${MEM_TARGETS:-levee haproxy nginx}
BACK_TARGETS=${MEM_BACK_TARGETS:-levee haproxy}
LEVEE_THREADS=${MEM_LEVEE_THREADS:-1}
BACK_LEVEE_THREADS=${MEM_BACK_LEVEE_THREADS:-}
LOAD_ROUNDS=${MEM_LOAD_ROUNDS:-64 256 64}
LOAD_DURATION=$(duration_seconds "${MEM_LOAD_DURATION:-20s}")
AFTER=$(duration_seconds "${MEM_AFTER:-60s}")
SAMPLE_EVERY=$(duration_seconds "${MEM_SAMPLE_EVERY:-5s}")
LOAD=${BENCH_LOAD:-auto}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
# Targets: levee at most 4 kB per idle connection; a minute after load, at
# most 1.2x the pre-load RSS (issue #16).
IDLE_TARGET_BYTES=4096
BACK_TARGET_RATIO=1.2

[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "MEM_CONNECTIONS must be a positive integer"
((SAMPLE_EVERY > 0)) || die "MEM_SAMPLE_EVERY must be at least 1s"
for c in $LOAD_ROUNDS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "MEM_LOAD_ROUNDS must be connection counts"; done
if [[ $LOAD == auto ]]; then
    if have wrk; then LOAD=wrk; else LOAD=testkit; fi
fi
[[ $LOAD == wrk || $LOAD == testkit ]] || die "BENCH_LOAD must be auto, wrk or testkit"
[[ $LOAD == wrk ]] && ! have wrk && die "BENCH_LOAD=wrk but wrk is not installed"

# Every idle connection is a socket here and one (or two) in the proxy: take
# the whole descriptor allowance, which the children inherit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [[ $FD_LIMIT != unlimited ]] && ((FD_LIMIT < 2 * CONNECTIONS + 512)); then
    die "ulimit -n is $FD_LIMIT (hard limit $(ulimit -Hn)): $((2 * CONNECTIONS + 512)) needed for $CONNECTIONS connections; raise it or lower MEM_CONNECTIONS"
fi

build_binaries "${1:-}"

# ---------------------------------------------------------------- proxies

BACKEND_PORT=""
# start_proxy NAME DIR THREADS: starts NAME fresh with its config in DIR; sets
# PROXY_PID and PROXY_URL. Returns 2 if NAME is not installed.
start_proxy() {
    local name=$1 dir=$2 threads=$3 port admin
    mkdir -p "$dir"
    PROXY_PID=""
    free_port port || return 1
    PROXY_URL="http://127.0.0.1:$port/"
    case $name in
        levee)
            free_port admin || return 1
            # max_idle_per_endpoint: levee's default (128).
            fill "$TEMPLATES/levee.toml.tmpl" "$dir/levee.toml" \
                ADMIN_PORT="$admin" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL=128 || return 1
            local args=(run -c "$dir/levee.toml")
            [[ -n $threads ]] && args+=(--worker-threads "$threads")
            start_bg "$dir/levee.log" env LEVEE_LOG="${LEVEE_LOG:-warn}" "$LEVEE" "${args[@]}"
            PROXY_PID=$LAST_PID
            wait_ready "$PROXY_PID" "http://127.0.0.1:$admin/ready" || return 1
            ;;
        haproxy)
            have haproxy || return 2
            # Room for every idle client plus the upstream pool; HAProxy
            # needs about two descriptors per connection.
            local maxconn=$((CONNECTIONS + 2048)) cap
            if [[ $FD_LIMIT != unlimited ]]; then
                cap=$(((FD_LIMIT - 200) / 2))
                ((maxconn > cap)) && maxconn=$cap
            fi
            fill "$TEMPLATES/haproxy.cfg.tmpl" "$dir/haproxy.cfg" \
                LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" MAXCONN="$maxconn" THREADS=1 || return 1
            start_bg "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"
            PROXY_PID=$LAST_PID
            ;;
        nginx)
            have nginx || return 2
            local user_line=""
            ((EUID == 0)) && user_line="user root;"
            fill "$TEMPLATES/nginx.conf.tmpl" "$dir/nginx.conf" \
                TMP="$dir" LISTEN_PORT="$port" BACKEND_PORT="$BACKEND_PORT" POOL=64 USER_LINE="$user_line" THREADS=1 || return 1
            start_bg "$dir/nginx.log" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
            PROXY_PID=$LAST_PID
            ;;
        *)
            log "unknown target '$name' (want levee, haproxy or nginx)"
            return 1
            ;;
    esac
    wait_ready "$PROXY_PID" "$PROXY_URL"
}

# run_load URL CONNECTIONS SECONDS OUT: keep-alive load in the background;
# sets LOAD_PID.
run_load() {
    local url=$1 c=$2 s=$3 out=$4
    if [[ $LOAD == wrk ]]; then
        start_bg "$out" wrk -t1 -c"$c" -d"${s}s" --timeout 2s "$url"
    else
        start_bg "$out" "$TESTKIT" load --url "$url" -c "$c" -d "${s}s" --deadline 2s --threads 1 --json
    fi
    LOAD_PID=$LAST_PID
}

# load_summary OUT: "requests errors" of a finished load run.
load_summary() {
    local out=$1
    if [[ $LOAD == wrk ]]; then
        awk '/requests in/ {r = $1}
             /Socket errors:/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
             /Non-2xx or 3xx responses/ {e += $NF}
             END {print r + 0, e + 0}' "$out"
    else
        sed -n 's/.*"sent":\([0-9]*\).*"error_count":\([0-9]*\).*/\1 \2/p' "$out" | head -1
    fi
}

mb() { awk -v k="$1" 'BEGIN { if (k == "") print "-"; else printf "%.1f MB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "" }'; }

TIMESTAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT_DIR"
JSON_OUT=$OUT_DIR/memory-$TIMESTAMP.json
RAW_OUT=$OUT_DIR/memory-$TIMESTAMP.log
: >"$RAW_OUT"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "")

free_port BACKEND_PORT
start_bg "$TMP/backend.log" "$TESTKIT" backend --listen "127.0.0.1:$BACKEND_PORT" --name origin --threads 1
BACKEND_PID=$LAST_PID
wait_ready "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/" ||
    { log "the backend did not start:"; cat "$TMP/backend.log" >&2; exit 1; }

# ---------------------------------------------------------------- part: idle

declare -A I_STATUS I_BEFORE I_AFTER I_OPEN I_CLOSED I_FAILED I_PER I_FDS
IDLE_ORDER=()
measure_idle() {
    local t=$1 dir=$TMP/idle/$1 rc=0
    IDLE_ORDER+=("$t")
    start_proxy "$t" "$dir" "$LEVEE_THREADS" || rc=$?
    if ((rc == 2)); then I_STATUS[$t]="skipped (not installed)"; log "$t: not installed, skipped"; return; fi
    if ((rc != 0)); then
        I_STATUS[$t]="failed to start"
        log "$t did not start:"; tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
        [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
        return
    fi
    # Warm-up on 64 connections, so lazily built state and the upstream pool
    # are in the baseline and only the idle connections are in the difference.
    "$TESTKIT" load --url "$PROXY_URL" -c 64 --max-requests 2000 --deadline 2s --threads 1 >"$dir/warmup.out" 2>&1 ||
        log "$t: warm-up failed (see $dir/warmup.out)"
    sleep 2
    local before fds_before after fds_after
    before=$(rss_kb "$PROXY_PID") fds_before=$(fd_count "$PROXY_PID")
    start_bg "$dir/idle.out" "$TESTKIT" idle --url "$PROXY_URL" -c "$CONNECTIONS" --hold 600s --json
    local idle_pid=$LAST_PID
    if ! wait_line "$dir/idle.out" '"phase":"holding"' "$idle_pid" 120; then
        I_STATUS[$t]="idle clients did not open"
        log "$t: the idle clients did not report:"; cat "$dir/idle.out" >&2
        stop_pid "$idle_pid"; stop_pid "$PROXY_PID"
        return
    fi
    sleep "$SETTLE"
    after=$(rss_kb "$PROXY_PID") fds_after=$(fd_count "$PROXY_PID")
    stop_pid "$idle_pid"
    local opened failed closed
    local holding
    holding=$(grep -m1 '"phase":"holding"' "$dir/idle.out")
    opened=$(sed -n 's/.*"opened":\([0-9]*\).*/\1/p' <<<"$holding")
    failed=$(sed -n 's/.*"failed":\([0-9]*\).*/\1/p' <<<"$holding")
    closed=$(sed -n 's/.*"closed_by_server":\([0-9]*\).*/\1/p' "$dir/idle.out" | head -1)
    I_BEFORE[$t]=$before I_AFTER[$t]=$after I_OPEN[$t]=${opened:-0} I_FAILED[$t]=${failed:-0}
    I_CLOSED[$t]=${closed:-0} I_FDS[$t]=$((fds_after - fds_before))
    if [[ -n $before && -n $after ]] && ((${opened:-0} > 0)); then
        I_PER[$t]=$(((after - before) * 1024 / opened))
        I_STATUS[$t]=ok
    else
        I_STATUS[$t]="no figures"
    fi
    log "$t: RSS $(mb "$before") -> $(mb "$after") with ${opened:-0} idle connections (${failed:-0} failed to open, ${closed:-0} closed by the proxy while held, +$((fds_after - fds_before)) fds): ${I_PER[$t]:-?} B/conn"
    { echo "== idle: $t"; cat "$dir/idle.out"; echo; } >>"$RAW_OUT"
    stop_pid "$PROXY_PID"
    for f in "$dir"/*.log; do [[ -s $f ]] && { echo "== idle: $t: $(basename "$f")"; tail -n 30 "$f"; echo; } >>"$RAW_OUT"; done
    return 0
}

# ---------------------------------------------------------------- part: back

declare -A B_STATUS B_BASE B_PEAK B_END B_AFTER B_SERIES B_LOAD B_FDS
BACK_ORDER=()
measure_back() {
    local t=$1 dir=$TMP/back/$1 rc=0
    BACK_ORDER+=("$t")
    local threads=""
    [[ $t == levee ]] && threads=$BACK_LEVEE_THREADS
    start_proxy "$t" "$dir" "$threads" || rc=$?
    if ((rc == 2)); then B_STATUS[$t]="skipped (not installed)"; log "$t: not installed, skipped"; return; fi
    if ((rc != 0)); then
        B_STATUS[$t]="failed to start"
        log "$t did not start:"; tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
        [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
        return
    fi
    sleep 2
    local base peak rss round=0 c loads="" base_fds
    base=$(rss_kb "$PROXY_PID") base_fds=$(fd_count "$PROXY_PID")
    peak=$base
    for c in $LOAD_ROUNDS; do
        round=$((round + 1))
        run_load "$PROXY_URL" "$c" "$LOAD_DURATION" "$dir/load$round.out"
        while kill -0 "$LOAD_PID" 2>/dev/null; do
            rss=$(rss_kb "$PROXY_PID")
            [[ -n $rss ]] && ((rss > peak)) && peak=$rss
            sleep 1
        done
        wait "$LOAD_PID" 2>/dev/null || log "$t: load round $round exited with an error"
        forget_pid "$LOAD_PID"
        read -r requests errors <<<"$(load_summary "$dir/load$round.out")"
        loads+="${loads:+, }{\"connections\": $c, \"requests\": ${requests:-0}, \"errors\": ${errors:-0}}"
        log "$t: round $round: $c connections, ${requests:-?} requests, ${errors:-?} errors, RSS $(mb "$(rss_kb "$PROXY_PID")") (peak $(mb "$peak"))"
        { echo "== back: $t round $round ($c connections)"; cat "$dir/load$round.out"; echo; } >>"$RAW_OUT"
    done
    # Every client has closed: watch what is given back.
    # fds: descriptors the proxy still holds (kept-alive upstream
    # connections among them), against its baseline.
    local end series="" s last fds
    end=$(rss_kb "$PROXY_PID")
    for ((s = 0; s <= AFTER; s += SAMPLE_EVERY)); do
        ((s > 0)) && sleep "$SAMPLE_EVERY"
        last=$(rss_kb "$PROXY_PID") fds=$(fd_count "$PROXY_PID")
        series+="${series:+, }{\"t_s\": $s, \"rss_kb\": ${last:-null}, \"fds\": $fds}"
        log "$t: ${s}s after load: RSS $(mb "$last"), $fds fds (baseline $base_fds)"
    done
    B_BASE[$t]=$base B_PEAK[$t]=$peak B_END[$t]=$end B_AFTER[$t]=$last B_SERIES[$t]=$series B_LOAD[$t]=$loads
    B_FDS[$t]="$base_fds $fds"
    if [[ -n $base && -n $last ]]; then B_STATUS[$t]=ok; else B_STATUS[$t]="no figures"; fi
    stop_pid "$PROXY_PID"
    for f in "$dir"/*.log; do [[ -s $f ]] && { echo "== back: $t: $(basename "$f")"; tail -n 30 "$f"; echo; } >>"$RAW_OUT"; done
    return 0
}

# ---------------------------------------------------------------- run

log "levee: $LEVEE"
log "parts: $PARTS; idle: $CONNECTIONS connections, settle ${SETTLE}s; back: rounds of ($LOAD_ROUNDS) connections x ${LOAD_DURATION}s ($LOAD), then ${AFTER}s"
if [[ -n $LOADAVG_BEFORE ]] && awk -v l="${LOADAVG_BEFORE%% *}" 'BEGIN {exit !(l > 0.5)}'; then
    log "note: load average is $LOADAVG_BEFORE before the run (memory figures move little with it)"
fi
if [[ " $PARTS " == *" idle "* ]]; then
    for t in $TARGETS; do log "== idle: $t"; measure_idle "$t"; done
fi
if [[ " $PARTS " == *" back "* ]]; then
    for t in $BACK_TARGETS; do log "== back: $t"; measure_back "$t"; done
fi
stop_pid "$BACKEND_PID"

# ---------------------------------------------------------------- report

echo
VERDICTS=()
if ((${#IDLE_ORDER[@]})); then
    echo "idle keep-alive connections: $CONNECTIONS, RSS read ${SETTLE}s after they went quiet"
    printf '%-9s %11s %11s %11s %7s %7s %8s\n' target rss_before rss_after bytes/conn open closed fds
    for t in "${IDLE_ORDER[@]}"; do
        if [[ ${I_STATUS[$t]} == ok ]]; then
            printf '%-9s %11s %11s %11s %7s %7s %8s\n' "$t" "$(mb "${I_BEFORE[$t]}")" "$(mb "${I_AFTER[$t]}")" \
                "${I_PER[$t]}" "${I_OPEN[$t]}" "${I_CLOSED[$t]}" "+${I_FDS[$t]}"
        else
            printf '%-9s %s\n' "$t" "${I_STATUS[$t]}"
        fi
    done
    if [[ ${I_STATUS[levee]:-} == ok ]]; then
        echo
        for o in haproxy nginx; do
            [[ ${I_STATUS[$o]:-} == ok ]] && printf 'levee/%-8s %s\n' "$o" "$(ratio "${I_PER[levee]}" "${I_PER[$o]}")"
        done
        if ((I_PER[levee] <= IDLE_TARGET_BYTES)); then
            VERDICTS+=("idle: levee ${I_PER[levee]} B/conn <= $IDLE_TARGET_BYTES: met")
        else
            VERDICTS+=("idle: levee ${I_PER[levee]} B/conn > $IDLE_TARGET_BYTES: MISSED")
        fi
    fi
    for t in "${IDLE_ORDER[@]}"; do
        [[ ${I_STATUS[$t]} == ok ]] || continue
        ((I_FAILED[$t] > 0 || I_CLOSED[$t] > 0)) &&
            echo "note: $t: ${I_FAILED[$t]} connections failed to open, ${I_CLOSED[$t]} were closed while held: its figure is per connection opened"
    done
    echo
fi
if ((${#BACK_ORDER[@]})); then
    echo "memory given back: load rounds of ($LOAD_ROUNDS) connections x ${LOAD_DURATION}s, then ${AFTER}s without clients"
    printf '%-9s %10s %10s %12s %10s %10s %11s %9s\n' target baseline peak end-of-load "after ${AFTER}s" peak/base after/base fds
    for t in "${BACK_ORDER[@]}"; do
        if [[ ${B_STATUS[$t]} == ok ]]; then
            read -r f0 f1 <<<"${B_FDS[$t]}"
            printf '%-9s %10s %10s %12s %10s %10s %11s %9s\n' "$t" "$(mb "${B_BASE[$t]}")" "$(mb "${B_PEAK[$t]}")" \
                "$(mb "${B_END[$t]}")" "$(mb "${B_AFTER[$t]}")" \
                "$(ratio "${B_PEAK[$t]}" "${B_BASE[$t]}")" "$(ratio "${B_AFTER[$t]}" "${B_BASE[$t]}")" "$f0->$f1"
        else
            printf '%-9s %s\n' "$t" "${B_STATUS[$t]}"
        fi
    done
    if [[ ${B_STATUS[levee]:-} == ok ]]; then
        r=$(ratio "${B_AFTER[levee]}" "${B_BASE[levee]}")
        if awk -v r="$r" -v m="$BACK_TARGET_RATIO" 'BEGIN {exit !(r <= m)}'; then
            VERDICTS+=("back: levee at ${r}x its baseline ${AFTER}s after load <= ${BACK_TARGET_RATIO}x: met")
        else
            VERDICTS+=("back: levee at ${r}x its baseline ${AFTER}s after load > ${BACK_TARGET_RATIO}x: MISSED")
        fi
    fi
    echo
fi
((${#VERDICTS[@]})) && printf '%s\n' "${VERDICTS[@]}"

{
    echo "{"
    echo "  \"timestamp\": $(json_str "$TIMESTAMP"),"
    echo "  \"git\": $(git_json),"
    echo "  \"levee\": $(json_str "$LEVEE"),"
    echo "  \"host\": {\"nproc\": $(nproc 2>/dev/null || echo 0), \"loadavg_before\": $(json_str "$LOADAVG_BEFORE")},"
    echo "  \"settings\": {\"connections\": $CONNECTIONS, \"settle_s\": $SETTLE, \"levee_threads_idle\": $(json_str "$LEVEE_THREADS"),"
    echo "    \"levee_threads_back\": $(json_str "${BACK_LEVEE_THREADS:-default}"), \"load_rounds\": $(json_str "$LOAD_ROUNDS"),"
    echo "    \"load_duration_s\": $LOAD_DURATION, \"after_s\": $AFTER, \"sample_every_s\": $SAMPLE_EVERY, \"load_generator\": $(json_str "$LOAD")},"
    echo "  \"idle\": ["
    n=0
    for t in "${IDLE_ORDER[@]+"${IDLE_ORDER[@]}"}"; do
        ((n++)) && echo ","
        if [[ ${I_STATUS[$t]} == ok ]]; then
            printf '    {"target": %s, "status": "ok", "rss_before_kb": %s, "rss_after_kb": %s, "bytes_per_connection": %s, "opened": %s, "failed": %s, "closed_while_held": %s, "fds_added": %s}' \
                "$(json_str "$t")" "${I_BEFORE[$t]}" "${I_AFTER[$t]}" "${I_PER[$t]}" "${I_OPEN[$t]}" "${I_FAILED[$t]}" "${I_CLOSED[$t]}" "${I_FDS[$t]}"
        else
            printf '    {"target": %s, "status": %s}' "$(json_str "$t")" "$(json_str "${I_STATUS[$t]}")"
        fi
    done
    echo
    echo "  ],"
    echo "  \"back\": ["
    n=0
    for t in "${BACK_ORDER[@]+"${BACK_ORDER[@]}"}"; do
        ((n++)) && echo ","
        if [[ ${B_STATUS[$t]} == ok ]]; then
            printf '    {"target": %s, "status": "ok", "baseline_kb": %s, "peak_kb": %s, "end_of_load_kb": %s, "after_kb": %s, "peak_ratio": %s, "after_ratio": %s, "fds_baseline_after": [%s], "loads": [%s], "after_load": [%s]}' \
                "$(json_str "$t")" "${B_BASE[$t]}" "${B_PEAK[$t]}" "${B_END[$t]}" "${B_AFTER[$t]}" \
                "$(ratio "${B_PEAK[$t]}" "${B_BASE[$t]}")" "$(ratio "${B_AFTER[$t]}" "${B_BASE[$t]}")" "${B_FDS[$t]/ /, }" "${B_LOAD[$t]}" "${B_SERIES[$t]}"
        else
            printf '    {"target": %s, "status": %s}' "$(json_str "$t")" "$(json_str "${B_STATUS[$t]}")"
        fi
    done
    echo
    echo "  ],"
    printf '  "verdicts": ['
    n=0
    for v in "${VERDICTS[@]+"${VERDICTS[@]}"}"; do ((n++)) && printf ', '; printf '%s' "$(json_str "$v")"; done
    echo "]"
    echo "}"
} >"$JSON_OUT"
echo "results: $JSON_OUT (raw output: $RAW_OUT)"
