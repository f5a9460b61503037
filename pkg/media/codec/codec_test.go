package codec

import (
	"bytes"
	"math"
	"slices"
	"testing"
	"time"
)

func TestL16BigEndian(t *testing.T) {
	enc := L16_48000.NewEncoder()
	got := enc.Encode(nil, []int16{0x0102, -2})
	if want := []byte{0x01, 0x02, 0xff, 0xfe}; !bytes.Equal(got, want) {
		t.Fatalf("L16 encode = % x, want % x (RFC 3551 §4.5.11: network byte order)", got, want)
	}
	if dec := L16_48000.NewDecoder().Decode(nil, got); !slices.Equal(dec, []int16{0x0102, -2}) {
		t.Fatalf("L16 decode = %v", dec)
	}
}

func TestL16StereoDownmix(t *testing.T) {
	st, ok := Lookup("l16", 48000, 2)
	if !ok || st.Channels != 2 {
		t.Fatalf("Lookup L16/48000/2 = %+v, %v", st, ok)
	}
	// Left 1000, right -200 → 400; a trailing odd byte is dropped.
	payload := []byte{0x03, 0xe8, 0xff, 0x38, 0x00, 0x10, 0x00, 0x30, 0x7f}
	if got := st.NewDecoder().Decode(nil, payload); !slices.Equal(got, []int16{400, 0x20}) {
		t.Fatalf("downmix = %v, want [400 32]", got)
	}
	if got := st.NewEncoder().Encode(nil, []int16{5}); !bytes.Equal(got, []byte{0, 5, 0, 5}) {
		t.Fatalf("stereo encode = % x, want the sample on both channels", got)
	}
}

func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		in := []int16{0, 1000, -1000, 8000, -30000}
		b := c.NewEncoder().Encode(nil, in)
		if len(b) != len(in) {
			t.Fatalf("%s: %d bytes for %d samples", c, len(b), len(in))
		}
		out := c.NewDecoder().Decode(nil, b)
		for i := range in {
			if d := int(out[i]) - int(in[i]); d > 1024 || d < -1024 {
				t.Errorf("%s: sample %d: %d → %d", c, i, in[i], out[i])
			}
		}
	}
}

// G.722 through the codec layer: 20 ms of 16 kHz audio is 160 bytes, and
// a 1 kHz tone comes back as one.
func TestG722Stream(t *testing.T) {
	enc, dec := G722.NewEncoder(), G722.NewDecoder()
	var out []int16
	for f := range 25 {
		in := make([]int16, 320)
		for i := range in {
			n := f*320 + i
			in[i] = int16(8000 * math.Sin(2*math.Pi*1000*float64(n)/16000))
		}
		b := enc.Encode(nil, in)
		if len(b) != 160 {
			t.Fatalf("%d bytes per 20 ms, want 160", len(b))
		}
		out = dec.Decode(out, b)
	}
	var s1, s2, total float64
	coeff := 2 * math.Cos(2*math.Pi*1000/16000)
	for _, x := range out[len(out)/2:] {
		v := float64(x)
		s1, s2 = v+coeff*s1-s2, s1
		total += v * v
	}
	if p := 2 * (s1*s1 + s2*s2 - coeff*s1*s2) / (float64(len(out)/2) * total); p < 0.95 {
		t.Fatalf("1 kHz holds %.3f of the decoded energy", p)
	}
}

func TestClockAndFrames(t *testing.T) {
	for _, tc := range []struct {
		c              Codec
		samples, ticks int
		rtpmap         string
	}{
		{PCMU, 160, 160, "PCMU/8000"},
		{G722, 320, 160, "G722/8000"}, // RFC 3551 §4.5.2
		{L16_16000, 320, 320, "L16/16000"},
		{L16_48000, 960, 960, "L16/48000"},
	} {
		n := tc.c.Samples(20 * time.Millisecond)
		if n != tc.samples || int(tc.c.Ticks(n)) != tc.ticks || tc.c.String() != tc.rtpmap {
			t.Errorf("%s: 20 ms = %d samples, %d ticks, %q; want %d, %d, %q", tc.c.Name, n, tc.c.Ticks(n), tc.c.String(), tc.samples, tc.ticks, tc.rtpmap)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate, ch int
		want     Codec
		ok       bool
	}{
		{"pcmu", 8000, 0, PCMU, true},
		{"G722", 8000, 1, G722, true},
		{"G722", 16000, 1, Codec{}, false}, // a wrong rtpmap, not G.722
		{"L16", 32000, 1, L16_32000, true},
		{"L16", 44100, 1, Codec{}, false},
		{"PCMU", 8000, 2, Codec{}, false},
		{"opus", 48000, 2, Codec{}, false},
	} {
		got, ok := Lookup(tc.name, tc.rate, tc.ch)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Lookup(%s/%d/%d) = %+v, %v", tc.name, tc.rate, tc.ch, got, ok)
		}
	}
}

func TestParse(t *testing.T) {
	for _, n := range Names {
		c, err := Parse(n)
		if err != nil {
			t.Errorf("Parse(%q): %v", n, err)
			continue
		}
		if c.NewEncoder() == nil || c.NewDecoder() == nil {
			t.Errorf("%s: no encoder", c)
		}
	}
	if c, _ := Parse("L16"); c != L16_16000 {
		t.Errorf("l16 = %s, want L16/16000", c)
	}
	for _, bad := range []string{"", "opus", "l16/44100", "g729", "pcmu,pcma"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// FuzzDecode: no payload makes a decoder panic, and each gives one sample
// per sample's worth of bytes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range append(All, Codec{Name: "L16", ClockRate: 48000, SampleRate: 48000, Channels: 2}) {
			d := c.NewDecoder()
			if d == nil {
				continue
			}
			out := d.Decode(nil, b)
			want := len(b)
			switch c.Name {
			case "L16":
				want = len(b) / (2 * c.Channels)
			case "G722":
				want = 2 * len(b)
			}
			if len(out) != want {
				t.Fatalf("%s: %d bytes → %d samples, want %d", c, len(b), len(out), want)
			}
		}
	})
}
