#!/usr/bin/env bash
# Regenerates pkg/media/g722/testdata: the inputs (Go, deterministic) and
# libspandsp's encoding and decoding of them, the reference natkit's G.722
# codec must match bit for bit, and ffmpeg's decoding of the stream (a
# second implementation, whose output saturates as natkit's does). The
# tests only read the committed files; run this to regenerate them, on a
# little-endian Debian machine with
#   apt-get install -y libspandsp-dev gcc ffmpeg
# then update the versions in testdata/README.md if they changed.
#
#   scripts/gen-g722-vectors/gen.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=pkg/media/g722/testdata
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$out"
go run ./scripts/gen-g722-vectors "$out"
gcc -O2 -Wall -o "$tmp/spandsp_ref" scripts/gen-g722-vectors/c/spandsp_ref.c -lspandsp

# A real stream: the test signal encoded, and that encoding decoded.
"$tmp/spandsp_ref" encode "$out/input.s16le" "$out/input.spandsp.g722"
"$tmp/spandsp_ref" decode "$out/input.spandsp.g722" "$out/input.spandsp.s16le"
# Arbitrary codes, decoded.
"$tmp/spandsp_ref" decode "$out/codes.g722" "$out/codes.spandsp.s16le"

# ffmpeg: its encoding must be spandsp's byte for byte (checked here, not
# committed twice); its decoding of the stream is kept.
ffmpeg -hide_banner -loglevel error -y -f s16le -ar 16000 -ac 1 -i "$out/input.s16le" \
  -c:a g722 -f g722 "$tmp/input.ffmpeg.g722"
cmp "$tmp/input.ffmpeg.g722" "$out/input.spandsp.g722"
ffmpeg -hide_banner -loglevel error -y -f g722 -i "$out/input.spandsp.g722" \
  -c:a pcm_s16le -f s16le "$out/input.ffmpeg.s16le"

echo "ffmpeg: $(ffmpeg -version | head -1)"
echo "spandsp: $(dpkg-query -W -f='${Package} ${Version}' libspandsp2 2>/dev/null || echo unknown)"
echo "gcc: $(gcc --version | head -1)"
echo "go: $(go version)"
ls -l "$out"; du -sh "$out"
