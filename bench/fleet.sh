#!/usr/bin/env bash
# bench/fleet.sh: N simulated levee instances (Redis stores in one process)
# against one local redis-server: how fast a verdict reaches every
# instance (p50/p99/max over 20 rounds), the store commands each instance
# sends per second at steady state, and redis-server's CPU, for each N.
#
# Usage: bench/fleet.sh
# Env:   FLEET_SIZES="2 10 100" FLEET_BREAKERS=100 FLEET_COMMANDS=0
#        BENCH_OUT=bench/out
#
# redis-server is started on a free loopback port and stopped at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$out/fleet-$stamp.log"
cargo bench -p levee-store --bench fleet 2>&1 | tee "$log" | grep -E '^(\||fleet:|[0-9]+ instances)'
echo "log: $log"
