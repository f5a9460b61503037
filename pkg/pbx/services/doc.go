// Package services is the PBX's built-in numbers — echo tests, music on
// hold, early media, the IVR, conference rooms — as an in-process SIP user
// agent server.
//
// It listens on its own UDP socket (Server.Addr), so that the PBX proxy
// forwards an INVITE for a service number there as it would to any
// registered contact, the way kamailio hands calls to FreeSWITCH. The
// numbers, after FreeSWITCH's demo dialplan:
//
//	9195  echo test: what the caller sends comes back 5 s later
//	9196  echo test without delay
//	9664  music on hold: a generated loop (tones.Music), paced at 20 ms
//	9182  early media: 183 Session Progress with SDP, ringback (US,
//	      440+480 Hz) for 2 s, the announcement; then 200 OK, the
//	      announcement once more, and BYE from the service
//	5000  IVR: a spoken menu, a digit runs 9196, 9664, 3000 or 4000 (ivr.go)
//	4000  voicemail (voicemail.go; with Config.Voicemail, else 480):
//	      - a hand-over from the proxy (Request-URI parameter box=USER,
//	        see pbx.Voicemail): the greeting, a beep, then the caller's
//	        audio is recorded into USER's box until BYE, '#' or
//	        VoicemailMax; less than 1 s is not kept;
//	      - a direct call: "enter your PIN, then pound; to leave a
//	        message, press star". '*', a box number and '#' leave a
//	        message there (the box must be an account). Digits and '#'
//	        open the caller's own box — the user the proxy authenticated
//	        (P-Asserted-Identity); a caller without one is refused. The
//	        PIN is VoicemailPINs[user] (compared in constant time, never
//	        logged); a box without a PIN opens on the digest login alone.
//	        Three wrong PINs end the call. Then "you have N messages",
//	        and each message, oldest first, marked heard once played,
//	        followed by the menu: 1 hear it again, 7 delete it, 6 (or 2,
//	        or #) the next one; no key for IVRTimeout plays the menu
//	        again (three times, then the next message); a key during a
//	        message cuts it short. "No more messages. Goodbye." and BYE.
//	      Digits come as RFC 4733 events, SIP INFO, or in-band tones.
//	3000–3399  conference rooms: 3000–3099 mixed at 8 kHz, 3100–3199 at
//	      16 kHz, 3200–3299 at 32 kHz, 3300–3399 at 48 kHz (package
//	      mixer; G.711 callers are resampled); each caller hears the others
//	      and not itself, beeps when someone joins or leaves, music on
//	      hold while alone; * or 0 mutes and unmutes (conference.go)
//
// Other numbers are answered 404. For 9182 a Request-URI parameter
// reject=CODE (e.g. sip:9182@pbx;reject=486) makes the service end the
// early media with that final status instead of answering: a test of how a
// phone or proxy handles early media followed by a failure.
//
// Each call answers the offer with package sdp (G.711 and
// telephone-event), takes an RTP port on the media IP (from a range, or
// any), and latches to the address the caller's RTP really comes from
// (symmetric RTP, RFC 4961), so that phones behind NAT hear the service.
// A call ends on BYE or CANCEL (487), after MaxDuration, or when no RTP
// has arrived for MediaTimeout (then the service sends BYE); a call on hold
// (a re-INVITE offering sendonly, inactive or c=0.0.0.0) is not timed out.
// A re-INVITE is answered with the SDP the call already has; OPTIONS gets
// 200. An INVITE without an offer, or without G.711 in it, gets 488.
// Like rtpengine without strict-source, latching trusts whoever sends the
// caller's stream; the echo answers each packet's source.
//
// The echo is byte-exact: each received payload in the negotiated codec
// goes back with fresh RTP headers (the service's own SSRC, sequence
// numbers and timestamps); for 9195 through a ring buffer of 5 s of
// samples, so the delay is counted in samples, not wall-clock time, and
// the echo stops when the caller stops sending. Telephone-events and
// comfort noise are not echoed.
//
// It is hand-written because sipgo stops at dialogs: it has no media, IVR
// or playback layer. What sipgo gives is used as is: the transaction layer
// (retransmissions, CANCEL → 487) and DialogUA for the UAS dialog.
package services

//go:generate ../../../scripts/gen-prompts.sh
