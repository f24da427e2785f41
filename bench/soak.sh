#!/usr/bin/env bash
# bench/soak.sh: levee under steady mixed load for a long while, with a
# backend fault injected every minute; does anything grow without bound?
#
# levee runs in front of three `levee-testkit backend`s (HTTP health checks
# every second). Two paced load generators run side by side, restarted every
# minute so that each minute has its own figures: GETs of `/`, and small
# POSTs to `/echo` carrying an `Idempotency-Key` (which lets levee retry
# them). From minute 1 on, every minute one backend gets a fault in rotation
# (hung, crashed, reset, slow, on b1, b2, b3 in turn) through its control
# port, and the previous fault is healed. Every 10 s levee's RSS and open
# file descriptors are read from /proc.
#
# Verdict: after the first (warm-up) minute the samples are cut in thirds;
# RSS or fds whose maximum in the last third is more than 20% above the
# maximum in the first third are flagged as growing.
#
# Usage: bench/soak.sh [LEVEE_BINARY]       (see bench/README.md for the knobs)
# Env:   SOAK_DURATION=10m SOAK_MINUTE=60s SOAK_RATE=500 SOAK_CONNECTIONS=64
#        SOAK_POST_SHARE=25 SOAK_FAULTS="hung crashed reset slow"
#        SOAK_DEADLINE=3s SOAK_LEVEE_THREADS= (levee's default)
#        BENCH_BUILD=1 BENCH_OUT=bench/out BENCH_KEEP_TMP=0
#
# Only 127.0.0.1 is ever contacted; all ports are picked free at run time.
set -euo pipefail

SCRIPT=soak.sh
KEEP_TMP=${BENCH_KEEP_TMP:-0}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- settings

DURATION=$(duration_seconds "${SOAK_DURATION:-10m}")
MINUTE=$(duration_seconds "${SOAK_MINUTE:-60s}")
RATE=${SOAK_RATE:-500}
CONNECTIONS=${SOAK_CONNECTIONS:-64}
POST_SHARE=${SOAK_POST_SHARE:-25}
read -ra FAULTS <<<"${SOAK_FAULTS:-hung crashed reset slow}"
DEADLINE=${SOAK_DEADLINE:-3s}
LEVEE_THREADS=${SOAK_LEVEE_THREADS:-}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
SAMPLE_EVERY=10
# Growth above this (last third's max over first third's max) is flagged.
GROWTH_LIMIT=1.20
# fds move with connections; a rise of fewer than this many is noise.
FD_SLACK=16

((MINUTE >= SAMPLE_EVERY)) || die "SOAK_MINUTE must be at least ${SAMPLE_EVERY}s"
MINUTES=$((DURATION / MINUTE))
((MINUTES >= 2)) || die "SOAK_DURATION must cover at least two SOAK_MINUTEs (one warm-up, one fault)"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "SOAK_RATE must be a positive integer (requests/s)"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] && ((CONNECTIONS >= 2)) || die "SOAK_CONNECTIONS must be at least 2"
[[ $POST_SHARE =~ ^[0-9]+$ ]] && ((POST_SHARE < 100)) || die "SOAK_POST_SHARE must be 0-99 (percent)"
((${#FAULTS[@]})) || die "SOAK_FAULTS is empty"
for f in "${FAULTS[@]}"; do
    case $f in hung | crashed | reset | slow | slow:* | failing | partial-reset*) ;; *) die "unknown fault '$f'" ;; esac
done
POST_CONNECTIONS=$((CONNECTIONS * POST_SHARE / 100))
((POST_SHARE > 0 && POST_CONNECTIONS == 0)) && POST_CONNECTIONS=1
GET_CONNECTIONS=$((CONNECTIONS - POST_CONNECTIONS))
POST_RATE=$((RATE * POST_SHARE / 100))
GET_RATE=$((RATE - POST_RATE))

build_binaries "${1:-}"

# ---------------------------------------------------------------- start

TIMESTAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT_DIR"
JSON_OUT=$OUT_DIR/soak-$TIMESTAMP.json
RAW_OUT=$OUT_DIR/soak-$TIMESTAMP.log
: >"$RAW_OUT"

BACKENDS=(b1 b2 b3)
declare -A BPORT CPORT
for b in "${BACKENDS[@]}"; do
    free_port "BPORT[$b]"
    free_port "CPORT[$b]"
    start_bg "$TMP/$b.log" "$TESTKIT" backend --listen "127.0.0.1:${BPORT[$b]}" --name "$b" \
        --threads 1 --control "127.0.0.1:${CPORT[$b]}"
    wait_ready "$LAST_PID" "http://127.0.0.1:${BPORT[$b]}/" ||
        { log "backend $b did not start:"; cat "$TMP/$b.log" >&2; exit 1; }
    wait_ready "$LAST_PID" "http://127.0.0.1:${CPORT[$b]}/mode" ||
        { log "backend $b's control port did not answer:"; cat "$TMP/$b.log" >&2; exit 1; }
done

free_port LISTEN_PORT
free_port ADMIN_PORT
fill "$TEMPLATES/levee-soak.toml.tmpl" "$TMP/levee.toml" ADMIN_PORT="$ADMIN_PORT" LISTEN_PORT="$LISTEN_PORT" \
    BACKEND1_PORT="${BPORT[b1]}" BACKEND2_PORT="${BPORT[b2]}" BACKEND3_PORT="${BPORT[b3]}"
LEVEE_ARGS=(run -c "$TMP/levee.toml")
[[ -n $LEVEE_THREADS ]] && LEVEE_ARGS+=(--worker-threads "$LEVEE_THREADS")
start_bg "$TMP/levee.log" env LEVEE_LOG="${LEVEE_LOG:-warn}" "$LEVEE" "${LEVEE_ARGS[@]}"
LEVEE_PID=$LAST_PID
wait_ready "$LEVEE_PID" "http://127.0.0.1:$ADMIN_PORT/ready" 30 ||
    { log "levee did not become ready:"; tail -n 30 "$TMP/levee.log" >&2; exit 1; }
URL="http://127.0.0.1:$LISTEN_PORT"

# set_mode BACKEND MODE: through the backend's control port.
set_mode() {
    local answer
    answer=$(curl -s --max-time 5 --noproxy '*' -X PUT --data "$2" "http://127.0.0.1:${CPORT[$1]}/mode") ||
        { log "could not set $1 to $2"; return 1; }
    log "backend $1 -> ${answer}"
}

# ---------------------------------------------------------------- run

log "levee: $LEVEE (pid $LEVEE_PID), ${MINUTES} minutes of ${MINUTE}s, $RATE req/s over $CONNECTIONS connections ($POST_SHARE% POST), faults: ${FAULTS[*]}"
SAMPLES=()      # "t_s rss_kb fds"
MINUTE_ROWS=()  # per-minute table lines
MINUTE_JSON=()
TOTAL_REQUESTS=0 TOTAL_ERRORS=0
declare -A TOTAL_BY_KIND
START=$(date +%s)
FAULTY=""       # backend with a fault now

# json_field JSON KEY: a top-level number of the load generator's JSON.
json_field() { sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" <<<"$1" | head -1; }

for ((m = 0; m < MINUTES; m++)); do
    fault="none" target="-"
    if [[ -n $FAULTY ]]; then
        set_mode "$FAULTY" healthy || true
        FAULTY=""
    fi
    if ((m > 0)); then
        k=$((m - 1))
        fault=${FAULTS[k % ${#FAULTS[@]}]}
        target=${BACKENDS[k % ${#BACKENDS[@]}]}
        set_mode "$target" "$fault" || true
        FAULTY=$target
    fi
    mdir=$TMP/minute$m
    mkdir -p "$mdir"
    start_bg "$mdir/get.json" "$TESTKIT" load --url "$URL/" -c "$GET_CONNECTIONS" --rate "$GET_RATE" \
        -d "${MINUTE}s" --deadline "$DEADLINE" --threads 1 --json
    get_pid=$LAST_PID
    post_pid=""
    if ((POST_CONNECTIONS > 0)); then
        start_bg "$mdir/post.json" "$TESTKIT" load --url "$URL/echo" --method POST \
            --body '{"soak":"a small request body of about sixty-four bytes"}' \
            -H "Idempotency-Key: soak-$TIMESTAMP" -c "$POST_CONNECTIONS" --rate "$POST_RATE" \
            -d "${MINUTE}s" --deadline "$DEADLINE" --threads 1 --json
        post_pid=$LAST_PID
    fi
    rss_max=0 fd_max=0
    # Samples 5 s into each 10 s, so the generators' connections are open.
    for ((s = 0; s < MINUTE; s += SAMPLE_EVERY)); do
        sleep $((s == 0 ? SAMPLE_EVERY / 2 : SAMPLE_EVERY))
        kill -0 "$LEVEE_PID" 2>/dev/null || { log "levee exited during minute $m"; tail -n 30 "$TMP/levee.log" >&2; exit 1; }
        rss=$(rss_kb "$LEVEE_PID") fds=$(fd_count "$LEVEE_PID")
        SAMPLES+=("$(($(date +%s) - START)) $rss $fds")
        ((rss > rss_max)) && rss_max=$rss
        ((fds > fd_max)) && fd_max=$fds
    done
    for pid in $get_pid $post_pid; do
        wait "$pid" || log "a load generator of minute $m exited with an error"
        forget_pid "$pid"
    done
    # What each backend received so far (a fault that no request met shows
    # as a counter that stood still).
    for b in "${BACKENDS[@]}"; do
        echo "== minute $m: backend $b: $(curl -s --max-time 2 --noproxy '*' "http://127.0.0.1:${CPORT[$b]}/stats" || echo unreachable)"
    done >>"$RAW_OUT"
    # Per minute: requests, errors by kind, p99 of each kind of request.
    requests=0 errors=0 kinds="" p99s=()
    declare -A BY_KIND=()
    for part in get post; do
        [[ -s $mdir/$part.json ]] || continue
        j=$(grep -m1 '^{' "$mdir/$part.json" || true)
        [[ -n $j ]] || { log "minute $m: no report from the $part load"; cat "$mdir/$part.json" >&2; continue; }
        { echo "== minute $m ($fault on $target): $part"; echo "$j"; } >>"$RAW_OUT"
        requests=$((requests + $(json_field "$j" sent)))
        errors=$((errors + $(json_field "$j" error_count)))
        p99s+=("$(sed -n 's/.*"latency_us":{[^}]*"p99":\([0-9]*\).*/\1/p' <<<"$j")")
        for kv in $(sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' <<<"$j" | tr -d '"' | tr ',' ' '); do
            BY_KIND[${kv%%:*}]=$((${BY_KIND[${kv%%:*}]:-0} + ${kv#*:}))
        done
    done
    for kind in "${!BY_KIND[@]}"; do
        kinds+="${kinds:+ }$kind=${BY_KIND[$kind]}"
        TOTAL_BY_KIND[$kind]=$((${TOTAL_BY_KIND[$kind]:-0} + BY_KIND[$kind]))
    done
    TOTAL_REQUESTS=$((TOTAL_REQUESTS + requests)) TOTAL_ERRORS=$((TOTAL_ERRORS + errors))
    p99_get=$(awk -v u="${p99s[0]:-}" 'BEGIN { if (u == "") print "-"; else printf "%.1fms", u / 1000 }')
    p99_post=$(awk -v u="${p99s[1]:-}" 'BEGIN { if (u == "") print "-"; else printf "%.1fms", u / 1000 }')
    row=$(printf '%6s %-14s %9s %7s %10s %10s %9s %5s  %s' "$m" "${fault}@${target}" "$requests" "$errors" \
        "$p99_get" "$p99_post" "$((rss_max / 1024))MB" "$fd_max" "${kinds:-}")
    MINUTE_ROWS+=("$row")
    log "minute $m: ${fault} on ${target}: $requests requests, $errors errors (${kinds:-none}), p99 GET $p99_get POST $p99_post, RSS max $((rss_max / 1024)) MB, fds max $fd_max"
    kinds_json=""
    for kind in "${!BY_KIND[@]}"; do kinds_json+="${kinds_json:+, }\"$kind\": ${BY_KIND[$kind]}"; done
    MINUTE_JSON+=("{\"minute\": $m, \"fault\": $(json_str "$fault"), \"backend\": $(json_str "$target"), \"requests\": $requests, \"errors\": $errors, \"errors_by_kind\": {$kinds_json}, \"p99_get_us\": ${p99s[0]:-null}, \"p99_post_us\": ${p99s[1]:-null}, \"rss_max_kb\": $rss_max, \"fds_max\": $fd_max}")
    unset BY_KIND
done
[[ -n $FAULTY ]] && set_mode "$FAULTY" healthy || true
FINAL_RSS=$(rss_kb "$LEVEE_PID") FINAL_FDS=$(fd_count "$LEVEE_PID")
{ echo "== levee log (last 50 lines)"; tail -n 50 "$TMP/levee.log"; } >>"$RAW_OUT"
stop_pid "$LEVEE_PID"

# ---------------------------------------------------------------- verdict

# Samples after the warm-up minute, in thirds: max of the first and last.
after=()
for sample in "${SAMPLES[@]}"; do
    read -r t _ _ <<<"$sample"
    ((t >= MINUTE)) && after+=("$sample")
done
third=$((${#after[@]} / 3))
growth() { # COLUMN -> "first_max last_max"
    local col=$1 i first=0 last=0 v
    for ((i = 0; i < third; i++)); do
        v=$(awk -v c="$col" '{print $c}' <<<"${after[i]}")
        ((v > first)) && first=$v
    done
    for ((i = ${#after[@]} - third; i < ${#after[@]}; i++)); do
        v=$(awk -v c="$col" '{print $c}' <<<"${after[i]}")
        ((v > last)) && last=$v
    done
    echo "$first $last"
}
VERDICT_RSS="not enough samples" VERDICT_FDS="not enough samples" RSS_GROWS=null FDS_GROW=null
if ((third >= 1)); then
    read -r rss_first rss_last <<<"$(growth 2)"
    read -r fd_first fd_last <<<"$(growth 3)"
    rss_ratio=$(awk -v a="$rss_last" -v b="$rss_first" 'BEGIN { printf "%.2f", a / b }')
    fd_ratio=$(awk -v a="$fd_last" -v b="$fd_first" 'BEGIN { printf "%.2f", a / b }')
    if awk -v r="$rss_ratio" -v l="$GROWTH_LIMIT" 'BEGIN {exit !(r > l)}'; then
        RSS_GROWS=true VERDICT_RSS="GROWS: max $((rss_first / 1024)) MB in the first third, $((rss_last / 1024)) MB in the last (x$rss_ratio)"
    else
        RSS_GROWS=false VERDICT_RSS="steady: max $((rss_first / 1024)) MB in the first third, $((rss_last / 1024)) MB in the last (x$rss_ratio)"
    fi
    if awk -v r="$fd_ratio" -v l="$GROWTH_LIMIT" 'BEGIN {exit !(r > l)}' && ((fd_last - fd_first > FD_SLACK)); then
        FDS_GROW=true VERDICT_FDS="GROW: max $fd_first in the first third, $fd_last in the last (x$fd_ratio)"
    else
        FDS_GROW=false VERDICT_FDS="steady: max $fd_first in the first third, $fd_last in the last (x$fd_ratio)"
    fi
fi
KINDS_TOTAL=""
for kind in "${!TOTAL_BY_KIND[@]}"; do KINDS_TOTAL+="${KINDS_TOTAL:+ }$kind=${TOTAL_BY_KIND[$kind]}"; done

echo
printf '%6s %-14s %9s %7s %10s %10s %9s %5s  %s\n' minute fault requests errors "p99 GET" "p99 POST" "RSS max" fds "errors by kind"
printf '%s\n' "${MINUTE_ROWS[@]}"
echo
echo "RSS: $VERDICT_RSS"
echo "fds: $VERDICT_FDS"
echo "client errors: $TOTAL_ERRORS of $TOTAL_REQUESTS requests${KINDS_TOTAL:+ ($KINDS_TOTAL)}"

{
    echo "{"
    echo "  \"timestamp\": $(json_str "$TIMESTAMP"),"
    echo "  \"git\": $(git_json),"
    echo "  \"levee\": $(json_str "$LEVEE"),"
    echo "  \"host\": {\"nproc\": $(nproc 2>/dev/null || echo 0), \"loadavg_after\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)")},"
    echo "  \"settings\": {\"minutes\": $MINUTES, \"minute_s\": $MINUTE, \"rate\": $RATE, \"connections\": $CONNECTIONS, \"post_share_percent\": $POST_SHARE,"
    echo "    \"faults\": $(json_str "${FAULTS[*]}"), \"deadline\": $(json_str "$DEADLINE"), \"levee_threads\": $(json_str "${LEVEE_THREADS:-default}")},"
    echo "  \"minutes\": ["
    for i in "${!MINUTE_JSON[@]}"; do
        ((i > 0)) && echo ","
        printf '    %s' "${MINUTE_JSON[i]}"
    done
    echo
    echo "  ],"
    printf '  "samples": ['
    for i in "${!SAMPLES[@]}"; do
        read -r t r f <<<"${SAMPLES[i]}"
        ((i > 0)) && printf ', '
        printf '{"t_s": %s, "rss_kb": %s, "fds": %s}' "$t" "${r:-null}" "${f:-null}"
    done
    echo "],"
    echo "  \"final\": {\"rss_kb\": ${FINAL_RSS:-null}, \"fds\": ${FINAL_FDS:-null}},"
    echo "  \"verdict\": {\"rss_grows\": $RSS_GROWS, \"rss\": $(json_str "$VERDICT_RSS"), \"fds_grow\": $FDS_GROW, \"fds\": $(json_str "$VERDICT_FDS"),"
    echo "    \"client_errors\": $TOTAL_ERRORS, \"requests\": $TOTAL_REQUESTS, \"errors_by_kind\": $(json_str "$KINDS_TOTAL")}"
    echo "}"
} >"$JSON_OUT"
echo "results: $JSON_OUT (raw output: $RAW_OUT)"
