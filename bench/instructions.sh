#!/usr/bin/env bash
# bench/instructions.sh: CPU instructions levee spends per proxied request,
# counted by valgrind's callgrind. Unlike requests/s this figure does not
# move with other load on the machine, so two builds can be compared exactly.
#
# levee (release, --worker-threads 1) runs under callgrind in front of a
# testkit backend; the testkit load generator sends N1 and then, in a second
# run, N2 GET requests over 4 keep-alive connections. Startup cost is the same
# in both runs, so (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request.
#
# Usage: bench/instructions.sh [LEVEE_BINARY]   (default: target/release/levee)
# Env:   BENCH_N1=2000 BENCH_N2=12000 BENCH_BUILD=1
# Only 127.0.0.1 is contacted (ports 18000, 18080, 19901 must be free).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N1=${BENCH_N1:-2000}
N2=${BENCH_N2:-12000}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    (cd "$REPO" && cargo build --release --quiet -p levee -p levee-testkit)
fi
LEVEE=${1:-$REPO/target/release/levee}
TESTKIT=$REPO/target/release/levee-testkit

instructions() {
    local requests=$1 dir
    dir=$(mktemp -d)
    cat > "$dir/levee.toml" <<TOML
[admin]
listen = "127.0.0.1:19901"
[runtime]
drain_timeout = "1s"
[[listener]]
name = "bench"
listen = "127.0.0.1:18080"
cluster = "origin"
[[cluster]]
name = "origin"
endpoints = ["127.0.0.1:18000"]
TOML
    "$TESTKIT" backend --listen 127.0.0.1:18000 --threads 1 >/dev/null 2>&1 &
    local backend=$!
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$LEVEE" run -c "$dir/levee.toml" --worker-threads 1 >/dev/null 2>"$dir/levee.log" &
    local levee=$!
    for _ in $(seq 150); do
        curl -sf http://127.0.0.1:19901/ready >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$TESTKIT" load --url http://127.0.0.1:18080/ -c 4 --max-requests "$requests" \
        --deadline 10s --threads 1 >/dev/null
    kill -TERM "$levee"; wait "$levee" || true
    kill "$backend"; wait "$backend" 2>/dev/null || true
    awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out"
    rm -rf "$dir"
}

first=$(instructions "$N1")
second=$(instructions "$N2")
echo "levee: $(( (second - first) / (N2 - N1) )) instructions per request ($LEVEE; $N1 and $N2 requests)"
