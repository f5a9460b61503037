// Package dtmf carries DTMF digits in-band (ITU-T Q.23 tone pairs, generated
// and detected) and as RFC 4733 telephone-events (payload encode, parse, the
// packet sequence of one digit, and a receiver that reports each digit once).
package dtmf

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/media/tones"
)

// Digits are the sixteen DTMF keys in RFC 4733 event-code order (0–15).
const Digits = "0123456789*#ABCD"

var (
	rowFreqs = [4]float64{697, 770, 852, 941}     // Q.23 low group
	colFreqs = [4]float64{1209, 1336, 1477, 1633} // Q.23 high group
	keypad   = [4]string{"123A", "456B", "789C", "*0#D"}
)

// Code is the RFC 4733 event code of a digit (§3.2 table 1).
func Code(digit rune) (uint8, bool) {
	i := strings.IndexRune(Digits, toUpper(digit))
	return uint8(i), i >= 0
}

// Digit is the digit of an RFC 4733 event code, or 0 for codes above 15.
func Digit(code uint8) rune {
	if int(code) >= len(Digits) {
		return 0
	}
	return rune(Digits[code])
}

func toUpper(r rune) rune {
	if r >= 'a' && r <= 'd' {
		return r - 'a' + 'A'
	}
	return r
}

// Freqs are the low and high frequency of a digit.
func Freqs(digit rune) (low, high float64, ok bool) {
	digit = toUpper(digit)
	for r, row := range keypad {
		if c := strings.IndexRune(row, digit); c >= 0 {
			return rowFreqs[r], colFreqs[c], true
		}
	}
	return 0, 0, false
}

// Level is the default level of each tone of a pair: -7 dBm0 (Q.24 sends
// between -4 and -10 dBm0 per tone).
var Level = tones.DBm0(-7)

// InBand is digits as tone pairs of on each with off of silence after each
// (Q.24: at least 40 ms each; 100/100 ms is common), each tone at level dBFS.
func InBand(digits string, on, off time.Duration, level float64) ([]int16, error) {
	var out []int16
	for _, d := range digits {
		lo, hi, ok := Freqs(d)
		if !ok {
			return nil, fmt.Errorf("dtmf: %q is not a DTMF digit", d)
		}
		out = append(out, tones.Mix(level, on, lo, hi)...)
		out = append(out, tones.Silence(off)...)
	}
	return out, nil
}

// Detection window: 205 samples (25.6 ms, 39 Hz bins, the classic Goertzel
// DTMF size) moved by half a window; a digit counts after two windows in a
// row agree, so tones of 52 ms or more are detected.
const (
	window = 205
	hop    = window / 2
)

// Detect returns the digits heard in samples (8 kHz), each once per burst.
func Detect(samples []int16) string {
	var (
		out        strings.Builder
		prev, last rune // previous window's digit, last digit emitted
	)
	for start := 0; start+window <= len(samples); start += hop {
		d := detectWindow(samples[start : start+window])
		switch {
		case d == 0:
			last = 0
		case d == prev && d != last:
			out.WriteRune(d)
			last = d
		}
		prev = d
	}
	return out.String()
}

func detectWindow(w []int16) rune {
	best := func(freqs [4]float64) (int, float64, float64) {
		bi, bp, second := 0, 0.0, 0.0
		for i, f := range freqs {
			p := tones.Power(w, f)
			if p > bp {
				bi, bp, second = i, p, bp
			} else if p > second {
				second = p
			}
		}
		return bi, bp, second
	}
	r, rp, r2 := best(rowFreqs)
	c, cp, c2 := best(colFreqs)
	// Both tones present, together most of the energy, each within 8 dB of
	// the other (twist), and each well above its group's runner-up.
	if rp+cp < 0.7 || rp < cp/6.3 || cp < rp/6.3 || r2 > rp/10 || c2 > cp/10 {
		return 0
	}
	return rune(keypad[r][c])
}

// Event is an RFC 4733 §2.3 named telephone event payload.
type Event struct {
	Code     uint8  // 0–15 for DTMF (Digits)
	End      bool   // E bit: the last packets of the event
	Volume   uint8  // power in -dBm0, 0–63
	Duration uint16 // timestamp units since the event began
}

// PayloadLen is the size of one event payload.
const PayloadLen = 4

// ErrShort is returned for a payload shorter than PayloadLen.
var ErrShort = errors.New("dtmf: telephone-event payload shorter than 4 bytes")

// Marshal is the 4-byte payload.
func (e Event) Marshal() []byte {
	b := [PayloadLen]byte{e.Code, e.Volume & 0x3f, byte(e.Duration >> 8), byte(e.Duration)}
	if e.End {
		b[1] |= 0x80
	}
	return b[:]
}

// Parse reads an event payload; bytes after the first 4 (RFC 4733 allows
// none without RED) are ignored, and the R bit is ignored as §2.3 says.
func Parse(b []byte) (Event, error) {
	if len(b) < PayloadLen {
		return Event{}, ErrShort
	}
	return Event{
		Code:     b[0],
		End:      b[1]&0x80 != 0,
		Volume:   b[1] & 0x3f,
		Duration: uint16(b[2])<<8 | uint16(b[3]),
	}, nil
}

// EndRepeats is how often the final packet of an event is sent (§2.5.1.4
// recommends three).
const EndRepeats = 3

// Packets are the payloads that send one digit lasting d at 8 kHz, one per
// ptime, all with the event's start timestamp (the first one with the RTP
// marker bit); the last is repeated EndRepeats times.
func Packets(digit rune, d, ptime time.Duration, volume uint8) ([]Event, error) {
	code, ok := Code(digit)
	if !ok {
		return nil, fmt.Errorf("dtmf: %q is not a DTMF digit", digit)
	}
	if ptime <= 0 || d < ptime {
		return nil, fmt.Errorf("dtmf: duration %v shorter than packet time %v", d, ptime)
	}
	total := tones.Samples(d)
	if total > 0xffff {
		return nil, fmt.Errorf("dtmf: duration %v longer than one event (8.19 s)", d)
	}
	step := tones.Samples(ptime)
	var out []Event
	for dur := step; dur < total; dur += step {
		out = append(out, Event{Code: code, Volume: volume, Duration: uint16(dur)})
	}
	for range EndRepeats {
		out = append(out, Event{Code: code, End: true, Volume: volume, Duration: uint16(total)})
	}
	return out, nil
}

// Receiver turns a stream of telephone-event packets into digits, each once
// although its end packet comes three times. A digit whose end packets are
// all lost is still reported when the next event begins.
type Receiver struct {
	ts      uint32
	active  bool // an event with timestamp ts is under way
	done    bool // and it has been reported
	pending rune
}

// Packet takes one packet's RTP timestamp and payload and returns the
// digits now complete (usually none or one).
func (r *Receiver) Packet(ts uint32, payload []byte) (string, error) {
	ev, err := Parse(payload)
	if err != nil {
		return "", err
	}
	var out string
	if !r.active || ts != r.ts {
		if r.active && !r.done && r.pending != 0 {
			out += string(r.pending)
		}
		r.ts, r.active, r.done, r.pending = ts, true, false, Digit(ev.Code)
	}
	if ev.End && !r.done {
		r.done = true
		if r.pending != 0 {
			out += string(r.pending)
		}
	}
	return out, nil
}

// Detector finds in-band DTMF digits in audio written to it frame by frame
// (8 kHz, any frame size), as Detect does in a whole recording: each digit
// once per burst. For phones that send neither RFC 4733 events nor SIP
// INFO.
type Detector struct {
	buf        []int16
	prev, last rune
}

// Write feeds samples and returns the digits that ended their second
// agreeing window in them.
func (d *Detector) Write(samples []int16) string {
	d.buf = append(d.buf, samples...)
	var out strings.Builder
	i := 0
	for ; i+window <= len(d.buf); i += hop {
		r := detectWindow(d.buf[i : i+window])
		switch {
		case r == 0:
			d.last = 0
		case r == d.prev && r != d.last:
			out.WriteRune(r)
			d.last = r
		}
		d.prev = r
	}
	d.buf = append(d.buf[:0], d.buf[i:]...) // what the next window starts with
	return out.String()
}
