package dtmf

import (
	"testing"
	"time"
)

func TestInfo(t *testing.T) {
	for _, d := range Digits {
		ct, body, err := InfoBody(d, 160*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got, dur, err := ParseInfo(ct, body)
		if err != nil || got != d || dur != 160*time.Millisecond {
			t.Errorf("%c: %q → %c %v %v", d, body, got, dur, err)
		}
	}
	if _, _, err := InfoBody('x', time.Second); err == nil {
		t.Error("InfoBody('x') accepted")
	}
	tests := []struct {
		ct, body string
		want     rune
		dur      time.Duration
	}{
		{"application/dtmf-relay", "Signal= 5\nDuration= 250\n", '5', 250 * time.Millisecond},
		{"Application/DTMF-Relay; charset=x", "signal=#\r\n", '#', 0},
		{"application/dtmf-relay", "Signal=11\r\nDuration=100\r\n", '#', 100 * time.Millisecond},
		{"application/dtmf-relay", "Signal=10\r\n", '*', 0},
		{"application/dtmf", "7", '7', 0},
		{"application/dtmf", "b\r\n", 'B', 0},
		{"application/dtmf-relay", "Signal=\r\n", 0, 0},
		{"application/dtmf-relay", "Signal=55\r\n", 0, 0},
		{"application/dtmf-relay", "Duration=100\r\n", 0, 0},
		{"application/sdp", "Signal=5\r\n", 0, 0},
		{"", "5", 0, 0},
	}
	for _, tt := range tests {
		got, dur, err := ParseInfo(tt.ct, []byte(tt.body))
		if got != tt.want || dur != tt.dur || (tt.want == 0) != (err != nil) {
			t.Errorf("%q %q: %q %v %v, want %q %v", tt.ct, tt.body, got, dur, err, tt.want, tt.dur)
		}
	}
}

// FuzzParseInfo: any INFO body gives a DTMF digit or ErrNotDTMF, never a
// panic, and a digit is one of Digits.
func FuzzParseInfo(f *testing.F) {
	f.Add("application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add("application/dtmf", []byte("#"))
	f.Add("application/dtmf-relay;x=\"", []byte("Signal=11"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		d, dur, err := ParseInfo(ct, body)
		if err != nil {
			return
		}
		if _, ok := Code(d); !ok || d >= 'a' || dur < 0 || dur > time.Minute {
			t.Errorf("%q %q: digit %q duration %v", ct, body, d, dur)
		}
	})
}
