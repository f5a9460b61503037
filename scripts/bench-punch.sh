#!/usr/bin/env bash
# scripts/bench-punch.sh — time to connect in the NAT lab (root, Linux).
# Runs natkit punch N times between two cone NATs (full cone ↔ port-restricted
# cone), and with --ice, and prints the median time_to_connect_ms (measured
# from the moment both peers have joined). A benchmark, not a test: it only
# reports. Traffic stays inside the lab's network namespaces.
#
#   sudo scripts/bench-punch.sh          # 20 runs each
#   sudo RUNS=50 scripts/bench-punch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export NATKIT_BENCH_RUNS="${RUNS:-20}"
exec go test -count=1 -run '^TestBenchPunch$' -v ./pkg/punch/ 2>&1 | grep -E 'bench-punch|^(ok|FAIL|---)'
