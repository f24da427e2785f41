#!/usr/bin/env bash
# Runs every check levee's CI runs, on a fresh Debian machine or a developer's.
# Installs what the tests need when it is missing, then: format, lint, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The self-health tests start real redis-server and memcached processes.
for binary in redis-server memcached; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        need_apt+=("$binary")
    fi
done
# The levee binary builds jemalloc's C source (tikv-jemalloc-sys).
# The tcp listener tests run real `git daemon` nodes and `git clone`/`push`.
if ! command -v git >/dev/null 2>&1 || [[ ! -x "$(git --exec-path 2>/dev/null)/git-daemon" ]]; then
    need_apt+=(git)
fi
# The dashboard test drives a real headless Chromium.
if [[ -z "${LEVEE_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
    need_apt+=(chromium)
fi
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
if ((${#need_apt[@]})); then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
