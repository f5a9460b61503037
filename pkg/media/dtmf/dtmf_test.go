package dtmf

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/tones"
)

func TestFreqsAndCodes(t *testing.T) {
	tests := []struct {
		digit     rune
		code      uint8
		low, high float64
	}{
		{'1', 1, 697, 1209}, {'5', 5, 770, 1336}, {'9', 9, 852, 1477}, {'0', 0, 941, 1336},
		{'*', 10, 941, 1209}, {'#', 11, 941, 1477}, {'A', 12, 697, 1633}, {'d', 15, 941, 1633},
	}
	for _, tt := range tests {
		lo, hi, ok := Freqs(tt.digit)
		code, okc := Code(tt.digit)
		if !ok || !okc || lo != tt.low || hi != tt.high || code != tt.code {
			t.Errorf("%c: %v+%v code %d, want %v+%v code %d", tt.digit, lo, hi, code, tt.low, tt.high, tt.code)
		}
		if Digit(tt.code) != toUpper(tt.digit) {
			t.Errorf("Digit(%d) = %c", tt.code, Digit(tt.code))
		}
	}
	if _, _, ok := Freqs('x'); ok {
		t.Error("x has frequencies")
	}
	if Digit(16) != 0 {
		t.Error("code 16 is a digit")
	}
}

// In-band digits survive G.711 and noise and are detected once each; short
// tones and speech-like single tones are not.
func TestInBandDetect(t *testing.T) {
	all := Digits
	sig, err := InBand(all, 60*time.Millisecond, 60*time.Millisecond, Level)
	if err != nil {
		t.Fatal(err)
	}
	noise := tones.Noise(3, -40, time.Duration(len(sig))*time.Second/tones.Rate)
	for i := range sig {
		sig[i] += noise[i]
	}
	for _, law := range []g711.Law{g711.ULaw, g711.ALaw} {
		got := Detect(law.Decode(nil, law.Encode(nil, sig)))
		if got != all {
			t.Errorf("%v: detected %q, want %q", law, got, all)
		}
	}
	repeated, _ := InBand("1111", 100*time.Millisecond, 100*time.Millisecond, Level)
	if got := Detect(repeated); got != "1111" {
		t.Errorf("repeated digit: %q", got)
	}
	if got := Detect(tones.Tone(697, -10, time.Second)); got != "" {
		t.Errorf("single tone detected as %q", got)
	}
	if got := Detect(tones.Music()); got != "" {
		t.Errorf("music detected as %q", got)
	}
	if _, err := InBand("12x", time.Second, time.Second, Level); err == nil {
		t.Error("x accepted")
	}
}

func TestEventWire(t *testing.T) {
	// RFC 4733 §2.3: digit 5, E set, volume 10, duration 800 (100 ms).
	ev := Event{Code: 5, End: true, Volume: 10, Duration: 800}
	want := []byte{0x05, 0x8a, 0x03, 0x20}
	if got := ev.Marshal(); !bytes.Equal(got, want) {
		t.Errorf("marshal % x, want % x", got, want)
	}
	back, err := Parse(append(want, 0xff)) // trailing byte ignored
	if err != nil || back != ev {
		t.Errorf("parse %+v %v", back, err)
	}
	// The reserved bit is ignored.
	if e, _ := Parse([]byte{1, 0x40 | 7, 0, 160}); e != (Event{Code: 1, Volume: 7, Duration: 160}) {
		t.Errorf("R bit: %+v", e)
	}
	if _, err := Parse([]byte{1, 2, 3}); err != ErrShort {
		t.Errorf("short: %v", err)
	}
}

func TestPackets(t *testing.T) {
	p, err := Packets('#', 100*time.Millisecond, 20*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	// 160, 320, 480, 640 then the end (800) three times.
	wantDur := []uint16{160, 320, 480, 640, 800, 800, 800}
	if len(p) != len(wantDur) {
		t.Fatalf("%d packets: %+v", len(p), p)
	}
	for i, e := range p {
		if e.Code != 11 || e.Duration != wantDur[i] || e.End != (i >= 4) || e.Volume != 10 {
			t.Errorf("packet %d: %+v", i, e)
		}
	}
	for _, bad := range []time.Duration{10 * time.Millisecond, 9 * time.Second} {
		if _, err := Packets('1', bad, 20*time.Millisecond, 10); err == nil {
			t.Errorf("duration %v accepted", bad)
		}
	}
}

func TestReceiver(t *testing.T) {
	type pkt struct {
		ts uint32
		ev Event
	}
	var stream []pkt
	for i, d := range "12#" {
		evs, _ := Packets(d, 100*time.Millisecond, 20*time.Millisecond, 10)
		for _, e := range evs {
			stream = append(stream, pkt{uint32(1000 + 8000*i), e})
		}
	}
	tests := []struct {
		name string
		drop func(i int, p pkt) bool
		want string
	}{
		{"all packets", func(int, pkt) bool { return false }, "12#"},
		{"first packets lost", func(_ int, p pkt) bool { return p.ev.Duration == 160 }, "12#"},
		{"two of three ends lost", func(i int, p pkt) bool { return p.ev.End && i%7 != 6 }, "12#"},
		{"all ends of the 2 lost", func(_ int, p pkt) bool { return p.ev.End && p.ts == 9000 }, "12#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Receiver
			var got string
			for i, p := range stream {
				if tt.drop(i, p) {
					continue
				}
				d, err := r.Packet(p.ts, p.ev.Marshal())
				if err != nil {
					t.Fatal(err)
				}
				got += d
			}
			if got != tt.want {
				t.Errorf("digits %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzReceiver(f *testing.F) {
	f.Add(uint32(1), []byte{1, 0x8a, 3, 0x20})
	f.Add(uint32(2), []byte{200, 0, 0})
	f.Fuzz(func(t *testing.T, ts uint32, b []byte) {
		var r Receiver
		rng := rand.New(rand.NewPCG(uint64(ts), 1))
		for i := 0; i+4 <= len(b); i += 4 {
			d, err := r.Packet(ts+uint32(rng.IntN(2)), b[i:i+4])
			if err != nil || len(d) > 2 {
				t.Fatalf("%q %v", d, err)
			}
		}
		if len(b) >= 4 {
			e, _ := Parse(b)
			if got, _ := Parse(e.Marshal()); got != e {
				t.Fatalf("round trip %+v → %+v", e, got)
			}
		}
	})
}

// TestDetector: frame by frame (20 ms, and odd sizes) the streaming
// detector finds what Detect finds in the whole signal.
func TestDetector(t *testing.T) {
	sig, err := InBand("159#*0D", 80*time.Millisecond, 60*time.Millisecond, -10)
	if err != nil {
		t.Fatal(err)
	}
	sig = append(sig, make([]int16, 800)...)
	want := Detect(sig)
	if want != "159#*0D" {
		t.Fatalf("Detect: %q", want)
	}
	for _, size := range []int{160, 37, 1000} {
		var d Detector
		var got string
		for i := 0; i < len(sig); i += size {
			got += d.Write(sig[i:min(i+size, len(sig))])
		}
		if got != want {
			t.Errorf("frames of %d: %q, want %q", size, got, want)
		}
		if len(d.buf) >= window {
			t.Errorf("frames of %d: %d samples kept", size, len(d.buf))
		}
	}
}
