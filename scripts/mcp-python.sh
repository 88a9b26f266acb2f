#!/usr/bin/env bash
# The official MCP Python SDK in a virtual environment under target/, for the tests that need
# a peer this repository cannot get from Rust: the stateless 2026-07-28 revision, the legacy
# HTTP+SSE (2024-11-05) transport, and the client's OAuth support (tests/oauth_flow.rs; its
# test authorization server signs with PyJWT and cryptography, which `mcp` requires).
# Idempotent; prints the interpreter's path.
# usage: mcp-python.sh [VERSION]   (default 2.3.0, in target/mcp-python; another release, e.g.
# 1.27.0 for a server that predates 2026-07-28, goes to target/mcp-python-VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-2.3.0}"
venv="target/mcp-python"
[ "$version" = "2.3.0" ] || venv="target/mcp-python-$version"
if ! "$venv/bin/python" -c "import mcp, sys; sys.exit(0 if __import__('importlib.metadata').metadata.version('mcp') == '$version' else 1)" 2>/dev/null; then
  python3 -m venv "$venv" >/dev/null 2>&1 || {
    command -v apt-get >/dev/null 2>&1 && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check "mcp==$version" uvicorn
fi
echo "$PWD/$venv/bin/python"
