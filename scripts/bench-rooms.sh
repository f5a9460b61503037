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
# Measured on 2026-12-05 (2 vCPUs, idle otherwise), 10 s per case, two runs:
# 1x50: 3119 and 3359 µs/participant-s, 0 and 0.077 % missing, 0 lost;
# 50x3: 2368 and 2784 µs/participant-s, 0.022 and 0 % missing, 0 lost (a
# missing share under 0.1 % is less than one frame per caller: the edges of
# the measuring window). About 0.4 of a core for 150 participants, callers
# included.
# Only loopback traffic; nothing outside the process is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${SECONDS_RUN:-10}
COUNT=${COUNT:-1}
nproc_=$(nproc)
echo "== BenchmarkRooms: ${SECONDS_RUN}s of audio per case, $COUNT run(s), $nproc_ CPUs, $(go version | awk '{print $3}')"
go test ./pkg/pbx/services -run '^$' -bench '^BenchmarkRooms$' -benchtime "${SECONDS_RUN}x" -count "$COUNT" 2>/dev/null |
  awk '
    /^BenchmarkRooms\// { name = $1 }
    /cpu-µs\/participant-s/ {
      line = name
      for (i = 2; i <= NF; i++)
        if ($(i) ~ /^(cpu-µs\/participant-s|missing-%|rtp-lost)$/) line = line "  " $(i) " " $(i-1)
      print line
    }
    /^(ok|FAIL)/ { print }'
