#!/usr/bin/env bash
# scripts/bench-punch.sh — time to connect in the NAT lab (root, Linux).
# Runs natkit punch N times between two cone NATs (full cone ↔ port-restricted
# cone) in each mode — UDP (natkit's strategies), --ice (pion's ICE) and --tcp
# (TCP simultaneous open) — and prints the median time_to_connect_ms of each
# (measured from the moment both peers have joined). A benchmark, not a test:
# it only reports. Traffic stays inside the lab's network namespaces.
#
#   sudo scripts/bench-punch.sh                 # 20 runs per mode
#   sudo RUNS=50 MODES=udp,ice scripts/bench-punch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export NATKIT_BENCH_RUNS="${RUNS:-20}"
export NATKIT_BENCH_MODES="${MODES:-udp,ice,tcp}"
go test -count=1 -timeout 30m -run '^TestBenchPunch$' -v ./pkg/punch/ 2>&1 |
	grep -E 'bench-punch: [a-z]+ +runs|bench-punch: .* failed:|^(ok|FAIL|---)' |
	sed -E 's/^ +bench_lab_test.go:[0-9]+: //'
