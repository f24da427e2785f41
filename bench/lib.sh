# bench/lib.sh: helpers shared by bench/memory.sh and bench/soak.sh (sourced,
# not run). The caller sets SCRIPT (its name, for messages) and KEEP_TMP
# before sourcing; this file creates $TMP and installs the cleanup trap that
# stops every child started with start_bg.
#
# Only 127.0.0.1 is ever contacted; ports are probed free at run time.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
TEMPLATES=$BENCH_DIR/templates

log() { echo "$SCRIPT: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
die() { log "$*"; exit 2; }

# ---------------------------------------------------------------- durations

# A bare number is seconds; otherwise "10s", "2m".
normalize_duration() {
    local d=$1
    [[ $d =~ ^[0-9]+$ ]] && d="${d}s"
    [[ $d =~ ^[0-9]+(s|m)$ ]] || die "bad duration '$1' (want e.g. 10s or 2m)"
    echo "$d"
}
duration_seconds() {
    local d
    d=$(normalize_duration "$1")
    case $d in
        *m) echo $((${d%m} * 60)) ;;
        *s) echo "${d%s}" ;;
    esac
}

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d "${TMPDIR:-/tmp}/levee-$SCRIPT.XXXXXX")
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
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        log "kept temp dir $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# start_bg OUT CMD...: runs CMD in the background, output to OUT; sets
# LAST_PID and remembers it for cleanup.
start_bg() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
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
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --noproxy '*' "$1" 2>/dev/null) == 200 ]]
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

# wait_line FILE PATTERN PID [SECONDS]: until FILE has a line matching
# PATTERN (grep -E); fails if PID exits first or on timeout.
wait_line() {
    local file=$1 pattern=$2 pid=$3 limit=${4:-30} i
    for ((i = 0; i < limit * 10; i++)); do
        grep -qE "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { grep -qE "$pattern" "$file" 2>/dev/null; return; }
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- /proc

# rss_kb PID: resident memory (VmRSS, kB) of PID plus its direct children
# (nginx's worker is a child of its master), or "" if PID is gone.
rss_kb() {
    local pid=$1 total=0 p v found=0
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        [[ -n $v ]] || continue
        found=1
        total=$((total + v))
    done
    ((found)) && echo "$total" || echo ""
}

# fd_count PID: open file descriptors of PID plus its direct children.
fd_count() {
    local pid=$1 total=0 p n
    for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
        n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l) || continue
        total=$((total + n))
    done
    echo "$total"
}

# ---------------------------------------------------------------- build, configs

# build_binaries: cargo build --release of levee and levee-testkit unless
# BENCH_BUILD=0; sets LEVEE (overridable with $1) and TESTKIT.
build_binaries() {
    local target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    if [[ ${BENCH_BUILD:-1} != 0 ]]; then
        log "building levee and levee-testkit (release)"
        (cd "$REPO" && cargo build --release --quiet -p levee -p levee-testkit) ||
            { log "cargo build failed"; exit 1; }
    fi
    LEVEE=${1:-$target_dir/release/levee}
    TESTKIT=$target_dir/release/levee-testkit
    local bin
    for bin in "$LEVEE" "$TESTKIT"; do
        [[ -x $bin ]] || { log "$bin not found (build with: cargo build --release -p levee -p levee-testkit)"; exit 1; }
    done
}

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

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

git_json() {
    local rev dirty=false
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "")
    [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=true
    echo "{\"rev\": $(json_str "$rev"), \"dirty\": $dirty}"
}
