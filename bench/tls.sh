#!/usr/bin/env bash
# bench/tls.sh: levee terminating TLS next to HAProxy (`bind ... ssl crt`),
# both at one thread in front of the same cleartext backend, with the same
# ECDSA P-256 certificate made for the run by openssl.
#
# Two loads, each measured with wrk (it speaks TLS with OpenSSL):
#   keepalive   BENCH_CONNECTIONS keep-alive connections: TLS requests/s
#   handshakes  every request on a new connection (`Connection: close`), so
#               each is a full TLS handshake (wrk does not resume sessions):
#               new handshakes/s
# Reported per proxy: requests/s and p99, and levee/HAProxy ratios.
#
# CPU pinning as in bench/throughput.sh: the proxy alone on the second CPU,
# the backend and wrk on the first.
#
# Usage: bench/tls.sh [LEVEE_BINARY]
# Env:   BENCH_DURATION=10s BENCH_WARMUP=2s BENCH_CONNECTIONS=64
#        BENCH_HANDSHAKE_CONNECTIONS=16 BENCH_TARGETS="levee haproxy"
#        BENCH_BUILD=1 BENCH_OUT=bench/out BENCH_KEEP_TMP=0
#
# Only 127.0.0.1 is ever contacted; all ports are picked free at run time.
set -euo pipefail

SCRIPT=tls.sh
KEEP_TMP=${BENCH_KEEP_TMP:-0}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(normalize_duration "${BENCH_DURATION:-10s}")
WARMUP=$(normalize_duration "${BENCH_WARMUP:-2s}")
CONNECTIONS=${BENCH_CONNECTIONS:-64}
HANDSHAKE_CONNECTIONS=${BENCH_HANDSHAKE_CONNECTIONS:-16}
TARGETS=${BENCH_TARGETS:-levee haproxy}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}
POOL=$((CONNECTIONS > 64 ? CONNECTIONS : 64))

have wrk || die "wrk is not installed (apt-get install wrk)"
have openssl || die "openssl is not installed"
have curl || die "curl is needed to wait for the proxies"

# The proxy on the second allowed CPU, everything else on the first.
CPU_PROXY="" CPU_OTHERS=""
if have taskset; then
    mapfile -t cpus < <(taskset -cp $$ | sed 's/.*: //' | tr ',' '\n' |
        awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }')
    if ((${#cpus[@]} >= 2)); then
        CPU_OTHERS=${cpus[0]} CPU_PROXY=${cpus[1]}
    fi
fi
# pinned CPU CMD...: exec CMD on CPU. It replaces the calling shell, so
# that start_bg records (and stop_pid stops) the command itself: call it
# in a subshell for foreground work.
pinned() {
    local cpu=$1
    shift
    if [[ -n $cpu ]]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

build_binaries "${1:-}"

# ---------------------------------------------------------------- certificate

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.log" ||
    { cat "$TMP/openssl.log" >&2; die "openssl could not make a certificate"; }
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"

# ---------------------------------------------------------------- backend

free_port BACKEND_PORT
start_bg "$TMP/backend.log" pinned "$CPU_OTHERS" "$TESTKIT" backend \
    --listen "127.0.0.1:$BACKEND_PORT" --name origin --threads 1
wait_ready "$LAST_PID" "http://127.0.0.1:$BACKEND_PORT/" || die "the backend did not start"

# ---------------------------------------------------------------- proxies

# start_proxy TARGET: sets PROXY_PID and PROXY_PORT.
start_proxy() {
    local target=$1 admin
    free_port PROXY_PORT
    case $target in
        levee)
            free_port admin
            cat >"$TMP/levee.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin"
[runtime]
drain_timeout = "1s"
[[listener]]
name = "bench"
listen = "127.0.0.1:$PROXY_PORT"
cluster = "origin"
tls = { cert = "$TMP/cert.pem", key = "$TMP/key.pem" }
[[cluster]]
name = "origin"
endpoints = ["127.0.0.1:$BACKEND_PORT"]
max_idle_per_endpoint = $POOL
EOF
            start_bg "$TMP/levee.log" pinned "$CPU_PROXY" "$LEVEE" run -c "$TMP/levee.toml" \
                --worker-threads 1
            PROXY_PID=$LAST_PID
            wait_ready "$PROXY_PID" "http://127.0.0.1:$admin/ready" ||
                { cat "$TMP/levee.log" >&2; die "levee did not start"; }
            ;;
        haproxy)
            have haproxy || return 2
            cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    hard-stop-after 10s
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 30s
    timeout server 15s
    timeout http-keep-alive 30s
frontend bench
    bind 127.0.0.1:$PROXY_PORT ssl crt $TMP/haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend origin
backend origin
    server origin1 127.0.0.1:$BACKEND_PORT pool-max-conn $POOL
EOF
            start_bg "$TMP/haproxy.log" pinned "$CPU_PROXY" haproxy -f "$TMP/haproxy.cfg" -db
            PROXY_PID=$LAST_PID
            local i
            for ((i = 0; i < 100; i++)); do
                curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$PROXY_PORT/" && break
                kill -0 "$PROXY_PID" 2>/dev/null || { cat "$TMP/haproxy.log" >&2; die "haproxy did not start"; }
                sleep 0.1
            done
            ;;
        *) die "unknown target '$target' (want levee or haproxy)" ;;
    esac
}

# run_wrk LOAD CONNECTIONS DURATION OUT: sets RPS and P99 (as wrk prints it)
# and ERRORS.
run_wrk() {
    local load=$1 connections=$2 duration=$3 out=$4 extra=()
    [[ $load == handshakes ]] && extra=(-H "Connection: close")
    (pinned "$CPU_OTHERS" wrk -t1 -c"$connections" -d"$duration" --timeout 2s --latency \
        "${extra[@]}" "https://127.0.0.1:$PROXY_PORT/") >"$out" 2>&1 || true
    RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    P99=$(awk '$1 == "99%" {print $2}' "$out")
    ERRORS=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i} END {print n + 0}' "$out")
}

declare -A RESULT
for target in $TARGETS; do
    if ! start_proxy "$target"; then
        log "$target is not installed; skipped"
        continue
    fi
    for load in keepalive handshakes; do
        connections=$CONNECTIONS
        [[ $load == handshakes ]] && connections=$HANDSHAKE_CONNECTIONS
        run_wrk "$load" "$connections" "$WARMUP" "$TMP/$target-$load-warmup.txt"
        run_wrk "$load" "$connections" "$DURATION" "$TMP/$target-$load.txt"
        RESULT[$target-$load]="$RPS $P99 $ERRORS"
        log "$target $load: ${RPS:-?} req/s, p99 ${P99:-?}, errors $ERRORS"
    done
    stop_pid "$PROXY_PID"
done

# ---------------------------------------------------------------- report

mkdir -p "$OUT_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=$OUT_DIR/tls-$stamp.txt
{
    printf '%-10s %-11s %10s %10s %8s\n' target load "req/s" p99 errors
    for target in $TARGETS; do
        for load in keepalive handshakes; do
            [[ -n ${RESULT[$target-$load]:-} ]] || continue
            read -r rps p99 errors <<<"${RESULT[$target-$load]}"
            printf '%-10s %-11s %10s %10s %8s\n' "$target" "$load" "$rps" "$p99" "$errors"
        done
    done
    echo
    for load in keepalive handshakes; do
        if [[ -n ${RESULT[levee-$load]:-} && -n ${RESULT[haproxy-$load]:-} ]]; then
            read -r levee _ _ <<<"${RESULT[levee-$load]}"
            read -r haproxy _ _ <<<"${RESULT[haproxy-$load]}"
            awk -v l="$levee" -v h="$haproxy" -v n="$load" \
                'BEGIN { if (h > 0) printf "levee/haproxy %s: %.2f (goal >= 1.00: %s)\n", n, l / h, (l >= h ? "met" : "not met") }'
        fi
    done
} | tee "$report"
log "results: $report"
