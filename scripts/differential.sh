#!/usr/bin/env bash
# Differential check of the HTTP/1 request parser against h11: sets up a venv with h11
# under target/diffvenv (once), builds shard/examples/parse_verdict.rs, and prints every
# input the two read differently (see scripts/differential.py). Findings, not failures:
# exits 0 unless something could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/diffvenv
if ! "$venv/bin/python" -c 'import h11' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet h11
fi
nice -n 10 cargo build --quiet -j 1 -p mcp-gateway-shard --example parse_verdict
exec "$venv/bin/python" scripts/differential.py --verdict-bin target/debug/examples/parse_verdict "$@"
