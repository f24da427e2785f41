#!/usr/bin/env bash
# bench/git.sh: `git clone` over git:// through a TCP proxy in front of three
# `git daemon` nodes, one of them hung (SIGSTOP: its kernel still accepts,
# nothing answers). Sequential clones through each target; per target the
# success rate, p50, p99 and the slowest clone.
#
# Targets:
#   levee-deadline  protocol = "tcp", tcp_replay 64KiB, first_byte_timeout
#                   (GIT_DEADLINE, default 1s), replay_first_bytes_match
#                   ["????git-upload-pack"]
#   levee           the same without first_byte_timeout
#   haproxy         mode tcp, balance roundrobin, option redispatch,
#                   retries 3, timeout connect 1s, timeout server
#                   (GIT_HAPROXY_SERVER_TIMEOUT, default 5s)
# A clone that has not finished after GIT_CLONE_LIMIT (default 10s) is
# killed and counted as failed: that is a user giving up.
#
# Usage: bench/git.sh [LEVEE_BINARY]
# Env:   GIT_CLONES=50 GIT_DEADLINE=1s GIT_CLONE_LIMIT=10
#        GIT_HAPROXY_SERVER_TIMEOUT=5s GIT_TARGETS="levee-deadline levee haproxy"
#        BENCH_BUILD=1 BENCH_OUT=bench/out BENCH_KEEP_TMP=0
#
# Only 127.0.0.1 is ever contacted; all ports are picked free at run time.
set -euo pipefail

SCRIPT=git.sh
KEEP_TMP=${BENCH_KEEP_TMP:-0}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLONES=${GIT_CLONES:-50}
DEADLINE=${GIT_DEADLINE:-1s}
CLONE_LIMIT=${GIT_CLONE_LIMIT:-10}
HAPROXY_SERVER_TIMEOUT=${GIT_HAPROXY_SERVER_TIMEOUT:-5s}
TARGETS=${GIT_TARGETS:-levee-deadline levee haproxy}
OUT_DIR=${BENCH_OUT:-$BENCH_DIR/out}

have git || die "git is not installed"
GIT_DAEMON="$(git --exec-path)/git-daemon"
[[ -x $GIT_DAEMON ]] || die "git-daemon not found (apt-get install git)"
have timeout || die "timeout (coreutils) is needed"

build_binaries "${1:-}"

export HOME=$TMP GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
gitq() { git -c user.name=levee -c user.email=levee@bench -c init.defaultBranch=main "$@"; }

# ---------------------------------------------------------------- nodes

# A repository with a few hundred KB of history, so a clone does real work.
mkdir -p "$TMP/work"
(
    cd "$TMP/work"
    gitq init -q
    for i in $(seq 1 20); do
        head -c 20000 /dev/urandom | base64 >"file$i.txt"
        gitq add "file$i.txt"
        gitq commit -q -m "commit $i"
    done
)
NODE_PORTS=()
NODE_PIDS=()
# start_node N: git daemon N on NODE_PORTS[N-1], waited for.
start_node() {
    local n=$1 port=${NODE_PORTS[$(($1 - 1))]}
    start_bg "$TMP/node$n.log" "$GIT_DAEMON" --reuseaddr --export-all --listen=127.0.0.1 \
        "--port=$port" "--base-path=$TMP/node$n" "$TMP/node$n"
    NODE_PIDS[$((n - 1))]=$LAST_PID
    for _ in $(seq 100); do port_in_use "$port" && break; sleep 0.05; done
}
for n in 1 2 3; do
    mkdir -p "$TMP/node$n"
    gitq clone -q --bare "$TMP/work" "$TMP/node$n/repo.git"
    free_port port
    NODE_PORTS+=("$port")
    start_node "$n"
done
# hang_node1: node 1 fresh, then stopped (SIGSTOP). Fresh for every target:
# a stopped daemon's accept queue (git daemon listens with a backlog of 5)
# fills with the connections sent to it, after which its kernel refuses
# new ones; the next target must meet a node that still accepts.
hang_node1() {
    kill -CONT "${NODE_PIDS[0]}" 2>/dev/null || true
    stop_pid "${NODE_PIDS[0]}"
    start_node 1
    kill -STOP "${NODE_PIDS[0]}"
}
trap 'kill -CONT "${NODE_PIDS[0]}" 2>/dev/null || true; cleanup' EXIT

# ---------------------------------------------------------------- proxies

start_target() {
    local target=$1 admin
    free_port PROXY_PORT
    case $target in
        levee-deadline | levee)
            free_port admin
            {
                printf '[admin]\nlisten = "127.0.0.1:%s"\n[runtime]\ndrain_timeout = "1s"\n' "$admin"
                printf '[[listener]]\nname = "git"\nlisten = "127.0.0.1:%s"\nprotocol = "tcp"\ncluster = "git"\n' "$PROXY_PORT"
                printf 'tcp_replay = "64KiB"\nreplay_first_bytes_match = ["????git-upload-pack"]\n'
                [[ $target == levee-deadline ]] && printf 'first_byte_timeout = "%s"\n' "$DEADLINE"
                printf '[[cluster]]\nname = "git"\nbalance = "round-robin"\nendpoints = ['
                printf '"127.0.0.1:%s", ' "${NODE_PORTS[@]}"
                printf ']\n'
            } >"$TMP/$target.toml"
            start_bg "$TMP/$target.log" "$LEVEE" run -c "$TMP/$target.toml" --worker-threads 1
            TARGET_PID=$LAST_PID
            wait_ready "$TARGET_PID" "http://127.0.0.1:$admin/ready" ||
                { cat "$TMP/$target.log" >&2; die "levee did not start"; }
            ;;
        haproxy)
            have haproxy || return 2
            {
                printf 'global\n    maxconn 1024\n    hard-stop-after 5s\n'
                printf 'defaults\n    mode tcp\n    option redispatch\n    retries 3\n'
                printf '    timeout connect 1s\n    timeout client 30s\n    timeout server %s\n' "$HAPROXY_SERVER_TIMEOUT"
                printf 'frontend git\n    bind 127.0.0.1:%s\n    default_backend nodes\n' "$PROXY_PORT"
                printf 'backend nodes\n    balance roundrobin\n'
                local n=1 port
                for port in "${NODE_PORTS[@]}"; do
                    printf '    server node%s 127.0.0.1:%s\n' "$n" "$port"
                    n=$((n + 1))
                done
            } >"$TMP/haproxy.cfg"
            start_bg "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"
            TARGET_PID=$LAST_PID
            for _ in $(seq 100); do port_in_use "$PROXY_PORT" && break; sleep 0.05; done
            ;;
        *) die "unknown target '$target' (want levee-deadline, levee or haproxy)" ;;
    esac
}

# ---------------------------------------------------------------- clones

declare -A RESULT
for target in $TARGETS; do
    hang_node1
    if ! start_target "$target"; then
        log "$target is not installed; skipped"
        continue
    fi
    times=()
    ok=0
    for i in $(seq 1 "$CLONES"); do
        dir="$TMP/clone-$target-$i"
        started=$(date +%s%N)
        if timeout "$CLONE_LIMIT" git clone -q "git://127.0.0.1:$PROXY_PORT/repo.git" "$dir" 2>/dev/null; then
            ok=$((ok + 1))
        fi
        times+=($((($(date +%s%N) - started) / 1000000)))
        rm -rf "$dir"
    done
    stop_pid "$TARGET_PID"
    read -r p50 p99 max < <(printf '%s\n' "${times[@]}" | sort -n | awk '
        { v[NR] = $1 }
        END {
            i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
            if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
            print v[i50], v[i99], v[NR]
        }')
    RESULT[$target]="$ok $p50 $p99 $max"
    log "$target: $ok/$CLONES clones, p50 ${p50} ms, p99 ${p99} ms, max ${max} ms"
done

mkdir -p "$OUT_DIR"
report=$OUT_DIR/git-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "$CLONES sequential git clones, 3 git daemon nodes, node 1 stopped (SIGSTOP, fresh for each target); a clone is given up after ${CLONE_LIMIT}s"
    printf '%-16s %10s %10s %10s %10s\n' target succeeded "p50 ms" "p99 ms" "max ms"
    for target in $TARGETS; do
        [[ -n ${RESULT[$target]:-} ]] || continue
        read -r ok p50 p99 max <<<"${RESULT[$target]}"
        printf '%-16s %10s %10s %10s %10s\n' "$target" "$ok/$CLONES" "$p50" "$p99" "$max"
    done
} | tee "$report"
log "results: $report"
