#!/bin/sh
# Regenerates the spoken prompts of pkg/pbx/services (go generate runs it).
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox); the build
# and the tests do not: the WAV files are committed.
# Output: 8 kHz, 16-bit signed, mono WAV, as pkg/media/wav reads; no dither
# (sox -D), so that the same espeak-ng and sox give the same bytes.
set -eu
dir=$(cd "$(dirname "$0")/.." && pwd)/pkg/pbx/services/prompts
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { # say NAME TEXT
	espeak-ng -v en-us -s 150 -w "$tmp/$1.raw.wav" "$2"
	# Trim leading/trailing silence, leave 100 ms of air each side, -3 dB.
	sox -D "$tmp/$1.raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$dir/$1.wav" \
		silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.1 0.1 gain -n -3
}
say early-media "This is the natkit early media test."
say ivr-menu "Welcome to natkit. For the echo test, press 1. For music on hold, press 2. For a conference, press 3. For voicemail, press 4."
say ivr-invalid "That option is not available."
