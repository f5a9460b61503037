#!/usr/bin/env bash
# scripts/bench-rooms.sh — the PBX's conference rooms at the scale of issue 12:
# one room of 50 callers and 50 rooms of 3, each caller a SIP UA and an RTP
# session on 127.0.0.1 saying its own tone, the rooms mixing at 8 kHz
# (pkg/pbx/services BenchmarkRooms). Prints, per case, the process's CPU per
# participant-second (callers included: an upper bound of the service's),
# the share of the 50 frames a second per caller that did not arrive, and
# RTP packets lost. SECONDS_RUN seconds of audio per case (default 10).
#
#   scripts/bench-rooms.sh
#   SECONDS_RUN=30 COUNT=3 scripts/bench-rooms.sh
#
# The mixer alone (no sockets, no codecs): go test ./pkg/media/mixer -bench .
# Only loopback traffic; nothing outside the process is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${SECONDS_RUN:-10}
COUNT=${COUNT:-1}
nproc_=$(nproc)
echo "== BenchmarkRooms: ${SECONDS_RUN}s of audio per case, $COUNT run(s), $nproc_ CPUs, $(go version | awk '{print $3}')"
go test ./pkg/pbx/services -run '^$' -bench '^BenchmarkRooms$' -benchtime "${SECONDS_RUN}x" -count "$COUNT" |
  grep -E '^(Benchmark|ok|FAIL)' |
  awk '{
    if ($1 ~ /^Benchmark/) {
      line = $1
      for (i = 2; i <= NF; i++) {
        if ($(i) ~ /^(cpu-µs\/participant-s|missing-%|rtp-lost)$/) line = line "  " $(i) " " $(i-1)
      }
      print line
    } else print
  }'
