#!/usr/bin/env bash
# The whole test suite, once on each I/O driver: io_uring (the default where the kernel
# allows it) and monoio's epoll driver (MONOIO_FORCE_LEGACY_DRIVER=1).
# Installs what the tests need first; run as root on Debian/Ubuntu, or have it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# tests/session_store.rs runs a real Redis.
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
if [ ${#need_pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"
fi

# Many sockets per test (1000 upstreams, 100 MB streams): lift the descriptor limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# The MCP Python SDK, a real peer for the 2026-07-28 and legacy HTTP+SSE tests.
MCP_PYTHON="$(bash scripts/mcp-python.sh | tail -n 1)"
export MCP_PYTHON
# A release from before the stateless revision, for groups that mix revisions.
bash scripts/mcp-python.sh 1.27.0 >/dev/null

cargo build --workspace --all-targets --quiet
# Both drivers always run, and each reports every failure (--no-fail-fast); the script fails
# at the end if either did.
status=0
echo "== test suite, io_uring driver =="
cargo test --workspace --no-fail-fast || status=1
echo "== test suite, epoll driver (MONOIO_FORCE_LEGACY_DRIVER=1) =="
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --workspace --no-fail-fast || status=1
exit "$status"
