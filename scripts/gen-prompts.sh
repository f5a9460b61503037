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
# Voicemail (4000).
say vm-greeting "The person you called is not available. Please leave a message after the tone. Hang up, or press pound, when you are done."
say vm-welcome "Welcome to natkit voicemail. Enter your PIN, then press pound. To leave a message, press star."
say vm-box "Enter the mailbox number, then press pound."
say vm-bad-pin "That PIN is not correct."
say vm-refused "Listening is not available for this caller."
say vm-you-have "You have"
say vm-messages "messages."
say vm-menu "To hear the message again, press 1. To delete it, press 7. For the next message, press 6."
say vm-deleted "Message deleted."
say vm-goodbye "No more messages. Goodbye."
for d in 0 1 2 3 4 5 6 7 8 9; do
	say "vm-digit-$d" "$d"
done
